import json
import os
import socket
import subprocess
import time
import urllib.request

import boto3
import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("EKS_SYNC_CACHE", os.path.expanduser("~/.cache/eks-admin-sync"))


class Emulator:
    """The local AWS emulator (tests/stack/awsemu.py): `emu("s3")` is a client of the default account;
    `emu.client("s3", creds)` one with other credentials (an assumed role's account, say)."""

    def __init__(self, url):
        self.url = url

    def __call__(self, svc):
        return self.client(svc, {"AWS_ACCESS_KEY_ID": "deploy", "AWS_SECRET_ACCESS_KEY": "deploy"})

    def client(self, svc, creds):
        return boto3.client(svc, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=creds.get("AWS_SESSION_TOKEN"))

    def calls(self):
        with urllib.request.urlopen(f"{self.url}/_emu/calls", timeout=5) as r:
            return json.loads(r.read())


@pytest.fixture(scope="module")
def aws():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    py = os.path.join(CACHE, "venv", "bin", "python")
    proc = subprocess.Popen([py, os.path.join(REPO, "tests", "stack", "awsemu.py"), "--port", str(port)],
                            stdout=open(os.path.join(CACHE, "deploy-test-awsemu.log"), "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/_emu/calls", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield Emulator(url)
    proc.terminate()
    proc.wait(timeout=10)
