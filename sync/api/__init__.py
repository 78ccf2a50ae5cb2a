"""The HTTP API (mounted by `sync.urls`): thin views that parse, authorise and
call one door of `sync.engine`. `views`: login, pull, push, discovery and the
app's conflicts; `devices`: app installations; `data`: the back-office API,
generated per synced model; `auth` / `device_auth`: tokens and the device header."""
