"""stageconfig_web: the admin web page of stageconfig (migration plan §7).

A small server-rendered Starlette app, started by ``scripts/admin-web``; it is a pure
client of the gRPC API (through ``stageconfig.admin.AdminClient``, public names only)
and holds no database access. See ``stageconfig_web.app`` for the routes and modules.
"""

from stageconfig_web.app import create_app
from stageconfig_web.settings import WebSettings

__all__ = ["WebSettings", "create_app"]
