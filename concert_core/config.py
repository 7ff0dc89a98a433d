"""Process-wide settings of the core, changed by assigning to the module attributes.

Example::

    from concert_core import config
    config.PROGRESS_BAR = False
"""

from __future__ import annotations

import pint

from concert_core.quantities import q

#: Show a progress bar (tqdm) during long-lasting operations.
PROGRESS_BAR: bool = True

#: Time step between the two position readings from which a motor's velocity is
#: computed. A longer step gives a more accurate velocity but makes reading it slower.
MOTOR_VELOCITY_SAMPLING_TIME: pint.Quantity = 0.1 * q.s

__all__ = ["MOTOR_VELOCITY_SAMPLING_TIME", "PROGRESS_BAR"]
