"""What the user asked of an inference workload's replicas, independent of how the API spells it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from rightsizer.core.errors import InvalidPolicy
from rightsizer.core.scaling_rate import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, StepRule
from rightsizer.core.scaling_signals import SignalTarget


@dataclass(frozen=True)
class ScalingPolicy:
    """What the user asked for, independent of how the API spells it."""

    min_replicas: int
    max_replicas: int
    target_utilization: float
    tolerance: float = 0.1
    tolerance_up: float | None = None
    """Per direction, as HPA's behavior.scaleUp/scaleDown.tolerance; None: ``tolerance``."""
    tolerance_down: float | None = None
    scale_up: StepRule = DEFAULT_SCALE_UP
    scale_down: StepRule = DEFAULT_SCALE_DOWN
    idle_threshold_percent: float = 1.0
    """With min_replicas == 0: a replica below this is idle (scale-to-zero candidate)."""
    wake_threshold: float = 0.0
    """With min_replicas == 0: a wake-up signal above this wakes the workload or keeps it up."""
    wake_replicas: int = 1
    """Replicas to start when waking from zero (at least 1, at most max_replicas)."""
    zero_after: timedelta | None = None
    """With min_replicas == 0: how long every observation must have recommended zero before
    scaling to zero; None means the scale-down stabilisation window."""
    scales_on_gpu: bool = True
    """GPU utilisation is one of the signals (False when spec.metrics lists only request signals)."""
    signals: tuple[SignalTarget, ...] = ()
    """Request-based signals (HPA's Pods, Object and External metrics), each proposing a count."""

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise InvalidPolicy("minReplicas", f"{self.min_replicas} is negative", "use 0 or more")
        if self.max_replicas < 1:
            raise InvalidPolicy("maxReplicas", f"{self.max_replicas} is below 1", "use 1 or more")
        if self.min_replicas > self.max_replicas:
            raise InvalidPolicy(
                "minReplicas",
                f"{self.min_replicas} is greater than maxReplicas {self.max_replicas}",
                "lower minReplicas or raise maxReplicas",
            )
        if not (0 < self.target_utilization <= 100) or math.isnan(self.target_utilization):
            raise InvalidPolicy(
                "targetUtilization", f"{self.target_utilization} is outside (0, 100]", "use e.g. 60"
            )
        if not (0 <= self.tolerance < 1):
            raise InvalidPolicy("tolerance", f"{self.tolerance} is outside [0, 1)", "use e.g. 0.1 for 10%")
        for name, value in (
            ("scaleUp.tolerance", self.tolerance_up),
            ("scaleDown.tolerance", self.tolerance_down),
        ):
            if value is not None and (not value >= 0 or math.isinf(value)):
                raise InvalidPolicy(name, f"{value} is not a finite number >= 0", "use e.g. 0.1 for 10%")
        if not (0 <= self.idle_threshold_percent <= 100):
            raise InvalidPolicy(
                "idleThresholdPercent", f"{self.idle_threshold_percent} is outside [0, 100]", "use e.g. 1"
            )
        if self.wake_replicas < 1:
            raise InvalidPolicy("wakeReplicas", f"{self.wake_replicas} is below 1", "use 1 or more")
        if self.zero_after is not None and self.zero_after < timedelta(0):
            raise InvalidPolicy("wakeUp.cooldown", f"{self.zero_after} is negative", "use e.g. 5m")
        if not self.scales_on_gpu and not self.signals:
            raise InvalidPolicy("metrics", "no signal to scale on", "list a Gpu metric or a request signal")
        names = [signal.name for signal in self.signals]
        if len(set(names)) != len(names):
            raise InvalidPolicy("metrics", f"names {names} repeat", "give each metric its own name")

    @property
    def tolerances(self) -> tuple[float, float]:
        """(scale-up, scale-down) tolerance."""
        return self.tolerance_for(True), self.tolerance_for(False)

    def tolerance_for(self, up: bool) -> float:
        """The tolerance of a scale-up (``up``) or of a scale-down."""
        chosen = self.tolerance_up if up else self.tolerance_down
        return self.tolerance if chosen is None else chosen

    @property
    def zero_window(self) -> timedelta:
        return self.scale_down.window if self.zero_after is None else self.zero_after

    @property
    def longest_window(self) -> timedelta:
        """How much recommendation history the decisions need."""
        return max(self.scale_up.window, self.scale_down.window, self.zero_window)
