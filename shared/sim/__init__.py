"""A loopback KIS OpenAPI simulator: KIS's paths, headers, TR ids, field names, limits and errors.

    from shared.sim import SimServer, SimConfig
    with SimServer(SimConfig(env="real", seed=1)) as sim:
        requests.post(sim.base_url + "/oauth2/tokenP", json={...})

See README.md in this package for every rule it enforces and every choice made where KIS's behaviour is unconfirmed.
"""

from shared.sim.config import SimConfig
from shared.sim.server import SimServer

__all__ = ["SimConfig", "SimServer"]
