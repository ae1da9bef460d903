"""The DDPM noise schedule and the rule that matches a coupling strength rho to a diffusion time."""

from __future__ import annotations

import torch

__all__ = ["NoiseSchedule"]


class NoiseSchedule:
    """Linear beta schedule ``beta_1..beta_T`` (paper: 1e-4 to 2e-2 over T = 512).

    Tensors are indexed by the diffusion time ``t = 0..T`` with ``alpha_bar[0] = 1`` (clean data), in
    float64 so that the t0 rule is exact. ``noise_std[t] = sqrt((1 - alpha_bar_t) / alpha_bar_t)`` is the
    noise level of ``u_t / sqrt(alpha_bar_t) = u_0 + noise_std[t] * eps`` in the units of ``u_0``.

    The attributes live on the CPU. The lookups (:meth:`t0_for_noise`, :meth:`time_for_noise`,
    :meth:`alpha_bar_at`) run on the device of their input, against a copy of the table made once per device
    (:meth:`noise_std_on`), so a sampler on a GPU never moves data to the host and back. A device without
    float64 (Apple MPS) is looked up on the CPU instead, and its results come back on the CPU.
    """

    def __init__(self, n_timesteps: int = 512, beta_start: float = 1e-4, beta_end: float = 2e-2):
        if n_timesteps < 2 or not 0 < beta_start <= beta_end < 1:
            raise ValueError("need n_timesteps >= 2 and 0 < beta_start <= beta_end < 1")
        self.n_timesteps = n_timesteps
        self.beta_start = beta_start
        self.beta_end = beta_end
        betas = torch.linspace(beta_start, beta_end, n_timesteps, dtype=torch.float64)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        self.alphas = 1.0 - self.betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)
        self.noise_std = torch.sqrt((1.0 - self.alpha_bars) / self.alpha_bars)
        self._device_tables: dict[torch.device, torch.Tensor] = {}

    def __getstate__(self) -> dict:
        # the per-device copies are a cache: never pickle them (a GPU tensor would not load on a CPU worker)
        state = self.__dict__.copy()
        state["_device_tables"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_device_tables", {})

    @property
    def max_noise_std(self) -> float:
        """Largest noise level the schedule reaches (at t = T)."""
        return float(self.noise_std[-1])

    def config(self) -> dict:
        return {"n_timesteps": self.n_timesteps, "beta_start": self.beta_start, "beta_end": self.beta_end}

    def noise_std_on(self, device: torch.device | str) -> torch.Tensor:
        """``noise_std`` (float64) on ``device``; copied there on first use and cached.

        Parameters
        ----------
        device
            The device of the tensors to be looked up.

        Returns
        -------
        The table on ``device`` (on the CPU for a device without float64, such as Apple MPS).
        """
        device = _lookup_device(torch.device(device))
        if device.type == "cpu":
            return self.noise_std
        table = self._device_tables.get(device)
        if table is None:
            table = self._device_tables[device] = self.noise_std.to(device)
        return table

    def t0_for_noise(self, noise_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First diffusion time whose noise level is at least ``noise_std`` (per row).

        Returns ``(t0, clamped)`` (int64 and bool, on the input's device). The prior step starts at the
        fractional time between ``t0 - 1`` and ``t0`` whose level is exactly ``noise_std``
        (:meth:`time_for_noise`), so no rounding error is left (the paper's code instead takes the last t
        *below* the level and starts one step later, and clamps silently at T). ``clamped`` flags rows whose
        requested level exceeds the schedule's maximum; they start at T.
        """
        levels = _as_float64(noise_std)
        t0 = torch.searchsorted(self.noise_std_on(levels.device), levels, right=False)
        clamped = t0 > self.n_timesteps
        return t0.clamp(max=self.n_timesteps), clamped

    def time_for_noise(self, noise_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fractional diffusion time whose noise level is exactly ``noise_std`` (per row), float64.

        Between grid points the noise level is interpolated linearly in ``t`` (:meth:`alpha_bar_at` is the
        inverse). The reverse diffusion starts there, so the input keeps exactly its own noise: rounding up
        to the next grid time (and topping the noise up) inflated the posterior variance by up to 1.5x at
        the small levels of high-signal data, where consecutive grid levels differ by 20-50 %.
        Returns ``(time, clamped)`` on the input's device; clamped rows (level above the schedule's maximum)
        get ``T``.
        """
        levels = _as_float64(noise_std)
        table = self.noise_std_on(levels.device)
        upper, clamped = self.t0_for_noise(levels)
        lower = (upper - 1).clamp(min=0)
        low_std, high_std = table[lower], table[upper]
        gap = high_std - low_std
        fraction = torch.where(gap > 0, (levels - low_std) / torch.where(gap > 0, gap, 1.0), 1.0)
        return lower + fraction.clamp(0.0, 1.0) * (upper - lower), clamped

    def alpha_bar_at(self, time: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``alpha_bar`` at fractional times (exact on the grid; noise level linear in between).

        Computed in float64 on the input's device and returned as float64, or cast to ``dtype`` when given.
        """
        time = _as_float64(time).clamp(0.0, float(self.n_timesteps))
        table = self.noise_std_on(time.device)
        lower = torch.floor(time).long().clamp(max=self.n_timesteps - 1)
        fraction = time - lower
        std = table[lower] + fraction * (table[lower + 1] - table[lower])
        abar = 1.0 / (1.0 + std**2)
        return abar if dtype is None else abar.to(dtype)


def _lookup_device(device: torch.device) -> torch.device:
    """Where lookups for tensors on ``device`` run: there, unless it has no float64 (MPS: the CPU)."""
    return torch.device("cpu") if device.type == "mps" else device


def _as_float64(values: torch.Tensor) -> torch.Tensor:
    """``values`` as float64 on their lookup device (no copy, and no host transfer, for CUDA or the CPU)."""
    device = _lookup_device(values.device)
    return values.to(device=device, dtype=torch.float64)
