"""stageconfig_web: the admin web page of stageconfig (migration plan §7).

A small server-rendered Starlette app, started by ``scripts/admin-web``; it is a pure
client of the gRPC API (through ``stageconfig.admin.AdminClient``) and holds no
database access. See ``stageconfig_web.app`` for the routes.
"""

from stageconfig_web.app import WebSettings, create_app

__all__ = ["WebSettings", "create_app"]
