"""How to reach Tweezer from Python: the snippet `make run` prints and the tokens page shows."""

from __future__ import annotations

#: The seed's open-batch example with the real SDK; format with token, project and url.
SNIPPET = """\
from pasqal_cloud.authentication import TokenProvider
from pasqal_cloud.endpoints import Endpoints
from pasqal_cloud.pasqal_cloud_client import PasqalCloudClient
from pulser import Pulse, Sequence
from pulser.devices import MockDevice
from pulser.register.special_layouts import TriangularLatticeLayout

class Token(TokenProvider):
    def get_token(self): return "{token}"

sdk = PasqalCloudClient(project_id="{project}", token_provider=Token(),
                        endpoints=Endpoints(core="{url}/core", account="{url}/account"))
seq = Sequence(TriangularLatticeLayout(100, 5).make_mappable_register(30), MockDevice)
seq.declare_channel("rydberg", "rydberg_global")
seq.add(Pulse.ConstantPulse(100, seq.declare_variable("omega_max"), 0, 0), "rydberg")
batch = sdk.create_batch(seq.to_abstract_repr(), [{{"runs": 50, "variables": {{"omega_max": 9.5, "qubits": {{"q0": 1, "q1": 5}}}}}}], device_type="EMU_FREE", open=True)
batch.add_jobs([{{"runs": 50, "variables": {{"omega_max": 10, "qubits": {{"q0": 2, "q1": 4}}}}}}], wait=True)
batch.close(wait=True); print(batch.status, [j.result for j in batch.ordered_jobs])
"""


def python_snippet(*, token: str, project: object, url: str) -> str:
    return SNIPPET.format(token=token, project=project, url=url)
