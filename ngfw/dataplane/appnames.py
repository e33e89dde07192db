"""How a flow's application is reported: the protocol (`app_proto`, Suricata's field) and the most
specific application (`app`, e.g. github over tls), from the catalogue the flow was decided with."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # replay imports this module: typing stays out of its start
    from typing import Any


def split_app(catalogue: Any, name: str | None) -> tuple[str | None, str | None]:
    """(app_proto, app): a host-based application (github, google) runs over its parent protocol."""
    if catalogue is None or name is None or name not in catalogue.by_name:
        return name, name
    app = catalogue.apps[catalogue.by_name[name]]
    proto = app
    depth = 0
    while proto.hosts and proto.parent is not None and depth < 8:
        proto = catalogue.apps[proto.parent]
        depth += 1
    return str(proto.name), name
