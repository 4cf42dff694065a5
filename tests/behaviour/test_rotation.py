"""Key rotation, the same on both drivers: a request in flight keeps the key it started
with, the next one uses the new key, and nothing fails in between."""

from __future__ import annotations

from pathlib import Path

import pytest
from driver_clients import DRIVERS, AsyncClient, Client, SyncClient
from secret_support import ProjectedVolume, RecordingServer, wait_until

from rakka_runtime.config.loader import load_config
from rakka_runtime.runtime import Runtime
from rakka_runtime.types import ChatResult


@pytest.mark.parametrize("driver", DRIVERS)
def test_rotation_keeps_in_flight_requests_and_switches_new_ones(
    tmp_path: Path, driver: str
) -> None:
    volume = ProjectedVolume(tmp_path / "secret")
    volume.write("sk-old")
    with RecordingServer(chunks=8, chunk_delay=0.05) as server:
        runtime = Runtime(
            load_config(
                [
                    "deployment=openai",
                    f"deployment.variant.endpoint={server.url}/v1",
                    "~deployment.api_key",
                    f"+deployment.api_key={{from: file, path: {volume.path}}}",
                    "deployment.secret_watch.debounce=20ms",
                ]
            )
        )
        client: Client = SyncClient(runtime) if driver == "sync" else AsyncClient(runtime)
        try:
            session = runtime.session
            assert session is not None
            in_flight = client.start("before")
            assert server.first_chunk_sent.wait(5)
            volume.write("sk-new")
            assert wait_until(lambda: session.swaps == 1)
            after, _ = client.run("after", stream=False)
            assert isinstance(in_flight.outcome(), ChatResult)
            assert after.text
            assert server.by_prompt("before").authorization == "Bearer sk-old"
            assert server.by_prompt("after").authorization == "Bearer sk-new"
        finally:
            if isinstance(client, AsyncClient):
                client.close()
            runtime.close()
