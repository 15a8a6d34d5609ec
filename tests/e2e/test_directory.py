"""The cluster directory of a warm function: DescribeCluster answers are cached across invocations, and
dropped when the cluster cannot be reached with them, so a re-created cluster (a new endpoint) is found
again by the next invocation instead of failing until the container is recycled."""

import os
import socket
import subprocess
import threading

from lambda_runtime_api import RuntimeApi, lambda_env
from stack import ACCOUNT, BINARY, cluster_report

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"


class Forwarder:
    """A TCP forwarder to the prod API server: the cluster's first endpoint, which then goes away."""

    def __init__(self, port):
        self.port, self.sock, self.conns = port, socket.socket(), []
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        """The endpoint goes away: no new connections, and the open ones are cut. (A listening socket must be
        shut down, not only closed: close alone leaves a thread blocked in accept() listening.)"""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_a_moved_cluster_is_described_again(stack):
    """On a cluster in API_AND_CONFIG_MAP mode a warm function's events use the directory's cache (no
    DescribeCluster); when the cluster cannot be reached with it, the entry is dropped and the next event
    describes the cluster again."""
    with open(os.path.join(stack.dir, "ca.crt")) as f:
        ca = f.read()
    old = Forwarder(stack.ports["api-prod"])
    stack.emu("/_emu/eks/prod", {"endpoint": f"https://127.0.0.1:{old.address}", "ca_pem": ca,
                                 "authenticationMode": "API_AND_CONFIG_MAP"})
    stack.create_user("alice", {"eks-cluster-admin": "true"})
    rt = RuntimeApi()
    fn = subprocess.Popen([BINARY], env=stack.function_env({**lambda_env(rt.address), "CLUSTER_NAMES": "prod"}),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stack.reset_calls()
        kind, result = rt.invoke({"action": "reconcile"})
        assert kind == "response" and cluster_report(result, "prod")["added"] == [ALICE], result
        kind, result = rt.invoke({"action": "reconcile", "user": "alice"})
        assert kind == "response", result
        assert stack.calls().get("eks:DescribeCluster") == 1, "warm: the directory answers a user's event"

        # The cluster moves: its old endpoint is gone, DescribeCluster names the new one.
        old.close()
        stack.emu("/_emu/eks/prod", {"endpoint": stack.api_url("prod"), "ca_pem": ca})
        kind, result = rt.invoke({"action": "reconcile", "user": "alice"})
        assert kind == "error", "the old endpoint cannot be reached (for the aws-auth retirement)"
        assert result["errorType"] == "ClustersNeedAttention", result
        assert result["errorMessage"].count("cluster prod:") == 1, result
        stack.iam().untag_user(UserName="alice", TagKeys=["eks-cluster-admin"])
        kind, result = rt.invoke({"action": "reconcile", "user": "alice"})
        assert kind == "response", result
        assert cluster_report(result, "prod")["removed"] == [ALICE]
        assert stack.calls().get("eks:DescribeCluster") == 2, "described again after the failure, once"
        # A full reconcile describes every cluster afresh (a change of authentication mode is seen at once).
        kind, result = rt.invoke({"action": "reconcile"})
        assert kind == "response", result
        assert stack.calls().get("eks:DescribeCluster") == 3
    finally:
        fn.terminate()
        fn.wait(timeout=10)
        rt.close()
        stack.emu("/_emu/eks/prod", {"endpoint": stack.api_url("prod"), "ca_pem": ca,
                                     "authenticationMode": "CONFIG_MAP"})


def test_a_cluster_last_seen_in_config_map_is_described_for_every_event(stack):
    """CONFIG_MAP is the one mode another run can move a cluster on from unseen by a warm function's cache;
    a warm function therefore describes such a cluster for every event (one DescribeCluster a cluster)."""
    stack.create_user("alice", {"eks-cluster-admin": "true"})
    rt = RuntimeApi()
    fn = subprocess.Popen([BINARY], env=stack.function_env(lambda_env(rt.address)),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kind, result = rt.invoke({"action": "reconcile"})
        assert kind == "response", result
        stack.reset_calls()
        for _ in range(2):
            kind, result = rt.invoke({"action": "reconcile", "user": "alice"})
            assert kind == "response", result
        assert stack.calls().get("eks:DescribeCluster") == 4, stack.calls()
    finally:
        fn.terminate()
        fn.wait(timeout=10)
        rt.close()
