"""Each server's own edge, where the server decides before any frontend sees a request."""
