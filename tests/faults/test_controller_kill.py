"""The controller killed with `kill -9` between the ImageStream update and the patch.

The scenario is already a lifecycle test (tests/integration/test_controller_lifecycle.py);
this runs that same test, with its fixtures, as part of the fault suite and prints its figure.
"""

from __future__ import annotations

import time

from imagestream.kube.client import Kube
from tests.faults.conftest import figure
from tests.integration.test_controller_lifecycle import (  # noqa: F401 - fixtures by name
    Controllers,
    controllers,
    plane,
    plane_kube,
)
from tests.integration.test_controller_lifecycle import (
    test_killed_between_the_tag_move_and_the_patch_converges_with_one_rollout as killed_between,
)


async def test_controller_killed_between_update_and_patch_rolls_out_once(
    plane_kube: Kube,  # noqa: F811 - the imported fixture
    controllers: Controllers,  # noqa: F811
) -> None:
    started = time.monotonic()
    await killed_between(plane_kube, controllers)
    figure(
        "controller-kill-9",
        rollouts_after_restart=1,
        seconds_including_restart=round(time.monotonic() - started, 1),
    )
