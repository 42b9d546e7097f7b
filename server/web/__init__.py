"""The web at the edge: the Tornado application and its routes, every HTTP and WebSocket handler, the Host check.

Nothing below this package imports Tornado's web or WebSocket modules: the parts it serves (the hub, the reading
path, the history, the display) know nothing of HTTP, and each handler gets the one part it needs from the route
table in server/web/app.py.
"""
