"""What the user asked of the stitch: one value built once by the CLI and passed down as is.

(How to draw is `netviz.render.RenderOptions`.) The choices are str-valued Enums, so the CLI can
offer them as they are and the library can compare them with plain strings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

if TYPE_CHECKING:
    from netviz.filters import FilterSpec


class GroupBy(str, Enum):
    """What one node of the map stands for."""

    process = "process"  # one command on a machine
    pid = "pid"  # one process
    host = "host"  # one machine
    unit = "unit"  # one systemd unit on a machine (else the command)
    container = "container"  # one container on a machine (else the command)
    pod = "pod"  # one Kubernetes pod on a machine (else the command)


class SortBy(str, Enum):
    """The order of the table's flows: connections, or bytes moved (TCP counters)."""

    count = "count"
    bytes = "bytes"


class Detail(str, Enum):
    """How much the static pictures (dot, svg, png) show past a size."""

    auto = "auto"
    full = "full"
    aggregate = "aggregate"


@dataclass(frozen=True)
class StitchOptions:
    """How to stitch and which flows to keep."""

    group_by: GroupBy = GroupBy.process
    show_external: bool = False
    filters: Optional["FilterSpec"] = None

    def knowing_groups(self, groups: Mapping[str, Sequence[str]]) -> "StitchOptions":
        """The same options, with the inventory's groups given to filters that have none (so that
        `--only db` can name a group of the run being drawn)."""
        if not groups or self.filters is None or self.filters.groups:
            return self
        return dataclasses.replace(self, filters=dataclasses.replace(self.filters, groups=groups))
