"""The local AWS + Kubernetes stack: etcd, one kube-apiserver per cluster, the AWS emulator (moto + presigned
STS), and the token-review authenticator. Everything binds 127.0.0.1 only and lives under one work dir.

Used by the end-to-end tests (tests/e2e) and the demo (tests/stack/demo.py).
"""

import base64
import datetime as dt
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import ssl

import boto3
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CACHE = os.environ.get("EKS_SYNC_CACHE", os.path.expanduser("~/.cache/eks-admin-sync"))
K8S_VERSION = os.environ.get("K8S_VERSION", "v1.37.2")
ETCD_VERSION = os.environ.get("ETCD_VERSION", "v3.6.16")
AUTHENTICATOR_VERSION = os.environ.get("AUTHENTICATOR_VERSION", "v0.6.13")
AWSAUTH_PARSER = os.path.join(CACHE, "bin", f"awsauth-parse-{AUTHENTICATOR_VERSION}")
ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTION_ROLE = "eks-admin-sync-fn"
NODE_ROLE = "eks-node"
FUNCTION_GROUP = "eks-admin-sync"
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
BINARY = os.environ.get("EKS_ADMIN_SYNC_BIN", os.path.join(TARGET_DIR, "debug", "eks-admin-sync"))
KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=90, proc=None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting")
        try:
            if check():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout}s: {last}")


def make_certs(d):
    """A CA, a serving cert for 127.0.0.1 signed by it, and a service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eks-admin-sync-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def write(name, data):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

    write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    write("server.crt", cert.public_bytes(serialization.Encoding.PEM))
    write("server.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    write("sa.key", sa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    write("sa.pub", sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))


class Stack:
    def __init__(self, clusters=("prod", "staging"), workdir=None, log=None, modes=None):
        self.clusters = list(clusters)
        # Each cluster's EKS authentication mode at start (CONFIG_MAP unless named here).
        self.modes = dict(modes or {})
        self.own_workdir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="eks-admin-sync-stack-")
        self.procs = {}
        self.last_run_end = 0.0
        self.logs = {}
        self.log = log or (lambda msg: print(f"[stack] {msg}", file=sys.stderr, flush=True))
        self.admin_token = base64.b32encode(os.urandom(20)).decode().lower()
        self.ports = {"etcd": free_port(), "etcd-peer": free_port(), "aws": free_port(), "authn": free_port()}
        for c in self.clusters:
            self.ports[f"api-{c}"] = free_port()
        self.aws_url = f"http://127.0.0.1:{self.ports['aws']}"
        self.ctx = None
        self.function_creds = None
        self.node_instance = None

    # ---------- processes ----------
    def _spawn(self, name, argv, env=None):
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.logs[name] = log
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
        self.procs[name] = p
        return p

    def _kill(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        log = self.logs.pop(name, None)
        if log:
            log.close()

    def tail(self, name, n=40):
        try:
            with open(os.path.join(self.dir, f"{name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def start(self):
        t0 = time.time()
        bin_dir = os.path.join(CACHE, "bin")
        etcd = os.path.join(bin_dir, f"etcd-{ETCD_VERSION}")
        apiserver = os.path.join(bin_dir, f"kube-apiserver-{K8S_VERSION}")
        for b in (etcd, apiserver):
            if not os.access(b, os.X_OK):
                raise RuntimeError(f"{b} is missing: run tests/stack/build-k8s.sh (make stack-deps)")
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"{BINARY} is missing: run cargo build")
        make_certs(self.dir)
        self.ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        with open(os.path.join(self.dir, "tokens.csv"), "w") as f:
            f.write(f'{self.admin_token},harness-admin,harness-admin,"system:masters"\n')
        try:
            self._start_etcd(etcd)
            self._start_aws()
            self._start_authenticator()
            for c in self.clusters:
                self.start_apiserver(c)
            self._seed()
        except Exception:
            for name in list(self.procs):
                self.log(f"--- {name} log tail ---\n{self.tail(name)}")
            self.stop()
            raise
        self.log(f"stack up in {time.time() - t0:.1f}s (work dir {self.dir})")
        return self

    def _start_etcd(self, etcd):
        p, pp = self.ports["etcd"], self.ports["etcd-peer"]
        proc = self._spawn("etcd", [
            etcd, "--name", "default", "--data-dir", os.path.join(self.dir, "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{p}", "--advertise-client-urls", f"http://127.0.0.1:{p}",
            "--listen-peer-urls", f"http://127.0.0.1:{pp}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
            "--initial-cluster", f"default=http://127.0.0.1:{pp}", "--unsafe-no-fsync", "--log-level", "warn",
        ])
        wait_for("etcd", lambda: urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=2).status == 200,
                 timeout=30, proc=proc)

    def _start_aws(self):
        env = dict(os.environ, AWS_DEFAULT_REGION=REGION, MOTO_ALLOW_NONEXISTENT_REGION="false")
        proc = self._spawn("aws", [sys.executable, os.path.join(HERE, "awsemu.py"), "--port", str(self.ports["aws"])], env)
        wait_for("aws emulator", lambda: urllib.request.urlopen(f"{self.aws_url}/_emu/calls", timeout=2).status == 200,
                 timeout=30, proc=proc)

    def _start_authenticator(self):
        argv = [sys.executable, os.path.join(HERE, "authenticator.py"), "--port", str(self.ports["authn"]),
                "--sts", self.aws_url, "--ec2", self.aws_url, "--eks", self.aws_url, "--admin-token", self.admin_token,
                "--ca", os.path.join(self.dir, "ca.crt"), "--awsauth-parser", AWSAUTH_PARSER]
        for c in self.clusters:
            argv += ["--cluster", f"{c}={self.api_url(c)}"]
        proc = self._spawn("authenticator", argv)

        def up():
            with socket.create_connection(("127.0.0.1", self.ports["authn"]), timeout=1):
                return True
        wait_for("authenticator", up, timeout=30, proc=proc)

    def api_url(self, cluster):
        return f"https://127.0.0.1:{self.ports[f'api-{cluster}']}"

    def start_apiserver(self, cluster):
        d = self.dir
        webhook = os.path.join(d, f"webhook-{cluster}.kubeconfig")
        with open(webhook, "w") as f:
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "authn", "cluster": {"server": f"http://127.0.0.1:{self.ports['authn']}/authenticate/{cluster}"}}],
                "users": [{"name": "apiserver", "user": {}}],
                "contexts": [{"name": "webhook", "context": {"cluster": "authn", "user": "apiserver"}}],
                "current-context": "webhook",
            }, f)
        audit_policy = os.path.join(d, "audit-policy.yaml")
        with open(audit_policy, "w") as f:
            # Record every request of the function's own identity (call counts in tests and benchmarks).
            yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                            "rules": [{"level": "Metadata", "users": [FUNCTION_GROUP]}, {"level": "None"}]}, f)
        apiserver = os.path.join(CACHE, "bin", f"kube-apiserver-{K8S_VERSION}")
        proc = self._spawn(f"apiserver-{cluster}", [
            apiserver,
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}", f"--etcd-prefix=/registry-{cluster}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports[f'api-{cluster}']}",
            f"--tls-cert-file={d}/server.crt", f"--tls-private-key-file={d}/server.key",
            f"--cert-dir={d}/certs-{cluster}",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={d}/sa.pub", f"--service-account-signing-key-file={d}/sa.key",
            "--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none", "--enable-priority-and-fairness=false",
            f"--token-auth-file={d}/tokens.csv",
            f"--authentication-token-webhook-config-file={webhook}",
            "--authentication-token-webhook-version=v1", "--authentication-token-webhook-cache-ttl=0s",
            f"--audit-policy-file={audit_policy}", f"--audit-log-path={d}/audit-{cluster}.log",
            "--audit-log-format=json", "--audit-log-mode=blocking",
            "--v=1",
        ])
        wait_for(f"kube-apiserver {cluster}", lambda: self.admin("GET", cluster, "/readyz")[0] == 200,
                 timeout=120, proc=proc)

    def stop_apiserver(self, cluster):
        self._kill(f"apiserver-{cluster}")

    def stop(self):
        for name in list(self.procs)[::-1]:
            self._kill(name)
        if self.own_workdir and not os.environ.get("KEEP_STACK"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---------- clients ----------
    def request(self, method, cluster, path, token, body=None, content_type="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url(cluster) + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type,
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw.startswith(b"{") else raw.decode())
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def admin(self, method, cluster, path, body=None, content_type="application/json"):
        return self.request(method, cluster, path, self.admin_token, body, content_type)

    CM = "/api/v1/namespaces/kube-system/configmaps/aws-auth"

    def get_aws_auth(self, cluster):
        code, body = self.admin("GET", cluster, self.CM)
        if code == 404:
            return None
        assert code == 200, (code, body)
        return body

    def put_aws_auth(self, cluster, data, annotations=None):
        """Replaces aws-auth wholesale (as a person with kubectl would), creating it if needed."""
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "aws-auth", "namespace": "kube-system", "annotations": annotations or {}},
              "data": data}
        code, body = self.admin("PUT", cluster, self.CM, cm)
        if code == 404:
            code, body = self.admin("POST", cluster, "/api/v1/namespaces/kube-system/configmaps", cm)
        assert code in (200, 201), (code, body)
        return body

    def iam(self):
        return boto3.client("iam", endpoint_url=self.aws_url, region_name=REGION,
                            aws_access_key_id="harness", aws_secret_access_key="harness")

    def aws(self, service, creds=None):
        creds = creds or {"aws_access_key_id": "harness", "aws_secret_access_key": "harness"}
        return boto3.client(service, endpoint_url=self.aws_url, region_name=REGION, **creds)

    def eks(self, creds=None):
        return self.aws("eks", creds)

    def set_mode(self, cluster, mode):
        """UpdateClusterConfig: the cluster's authentication mode, only ever towards API (as EKS)."""
        self.eks().update_cluster_config(name=cluster, accessConfig={"authenticationMode": mode})

    def entries(self, cluster):
        """Every access entry of a cluster: {principalArn: entry + "policies": {policyArn: accessScope}}."""
        eks = self.eks()
        out = {}
        for page in eks.get_paginator("list_access_entries").paginate(clusterName=cluster):
            for arn in page["accessEntries"]:
                e = eks.describe_access_entry(clusterName=cluster, principalArn=arn)["accessEntry"]
                pols = eks.list_associated_access_policies(clusterName=cluster, principalArn=arn)["associatedAccessPolicies"]
                e["policies"] = {p["policyArn"]: p["accessScope"] for p in pols}
                out[arn] = e
        return out

    def writes(self, cluster):
        """The access-entry writes on `cluster` since the last reset_calls, in order: (action, principal)."""
        with urllib.request.urlopen(f"{self.aws_url}/_emu/writes", timeout=5) as r:
            return [(a, p) for a, c, p in json.loads(r.read())["writes"] if c == cluster]

    def calls(self):
        with urllib.request.urlopen(f"{self.aws_url}/_emu/calls", timeout=5) as r:
            return json.loads(r.read())

    def function_requests(self, cluster):
        """(verb, resource, name, code) of every request the function's identity made to `cluster`."""
        out = []
        try:
            with open(os.path.join(self.dir, f"audit-{cluster}.log")) as f:
                for line in f:
                    e = json.loads(line)
                    ref = e.get("objectRef") or {}
                    out.append((e["verb"], ref.get("resource"), ref.get("name"), e.get("responseStatus", {}).get("code")))
        except FileNotFoundError:
            pass
        return out

    def emu(self, path, body):
        req = urllib.request.Request(f"{self.aws_url}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read() or b"{}")

    def reset_calls(self):
        urllib.request.urlopen(urllib.request.Request(f"{self.aws_url}/_emu/calls/reset", data=b"{}", method="POST"),
                               timeout=5).read()

    # ---------- seeding ----------
    def node_roles_yaml(self):
        return (f"- rolearn: arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}\n"
                "  username: system:node:{{EC2PrivateDNSName}}\n"
                "  groups:\n    - system:bootstrappers\n    - system:nodes\n"
                f"- rolearn: arn:aws:iam::{ACCOUNT}:role/{FUNCTION_ROLE}\n"
                f"  username: {FUNCTION_GROUP}\n  groups:\n    - {FUNCTION_GROUP}\n")

    def seed_aws_auth(self, cluster):
        """aws-auth as EKS + the bootstrap step leave it: node role and the function's own role in mapRoles."""
        self.put_aws_auth(cluster, {"mapRoles": self.node_roles_yaml()})

    def _seed(self):
        iam = self.iam()
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
        for role in (FUNCTION_ROLE, NODE_ROLE):
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
        sts = self.aws("sts")
        c = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{FUNCTION_ROLE}", RoleSessionName="eks-admin-sync")["Credentials"]
        self.function_creds = {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
                               "AWS_SESSION_TOKEN": c["SessionToken"]}
        ec2 = self.aws("ec2")
        image = ec2.describe_images()["Images"][0]["ImageId"]
        inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.medium")["Instances"][0]
        self.node_instance = inst["InstanceId"]
        n = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}", RoleSessionName=self.node_instance)["Credentials"]
        self.node_creds = {"AWS_ACCESS_KEY_ID": n["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": n["SecretAccessKey"],
                           "AWS_SESSION_TOKEN": n["SessionToken"]}
        with open(os.path.join(self.dir, "ca.crt")) as f:
            ca_pem = f.read()
        self.ca_pem = ca_pem
        for cl in self.clusters:
            self.register_cluster(cl, reset_entries=True)
            self.kubectl_admin(cl, ["apply", "-f", os.path.join(REPO, "infra", "rbac.yaml"),
                                    "-f", os.path.join(HERE, "access-policy-bindings.yaml")])
            self.seed_aws_auth(cl)

    def register_cluster(self, cl, reset_entries=False):
        """Points the emulator's EKS cluster at the local API server, in its starting mode."""
        self.emu(f"/_emu/eks/{cl}", {"endpoint": self.api_url(cl), "ca_pem": self.ca_pem,
                                      "authenticationMode": self.modes.get(cl, "CONFIG_MAP"),
                                      "reset_entries": reset_entries})

    def kubectl_admin(self, cluster, args):
        out = subprocess.run([KUBECTL, f"--server={self.api_url(cluster)}", f"--token={self.admin_token}",
                              f"--certificate-authority={os.path.join(self.dir, 'ca.crt')}"] + args,
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
        return out.stdout

    # ---------- the function and its users ----------
    def function_env(self, extra=None):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": self.dir,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.aws_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "CLUSTER_NAMES": " ".join(self.clusters),
            "FUNCTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{FUNCTION_ROLE}",
            "LOG_LEVEL": "info",
            **self.function_creds,
        }
        env.update(extra or {})
        return env

    def run(self, args, extra_env=None, input=None, timeout=120):
        """Runs the product binary (CLI mode) as the function's own role."""
        try:
            return subprocess.run([BINARY] + args, env=self.function_env(extra_env), input=input,
                                  capture_output=True, text=True, timeout=timeout)
        finally:
            self.ran()

    def ran(self):
        """The function just ran (and may have revoked): later kubectl checks sign their tokens after it."""
        self.last_run_end = time.time()

    def handle_event(self, event, extra_env=None):
        """Delivers one event through `handle-event -`; returns (exit code, report or None, stderr).
        The stderr text holds the audit and metric lines (see `json_lines`)."""
        if isinstance(event, str) and not event.lstrip().startswith("{"):
            with open(os.path.join(REPO, "events", event)) as f:
                event = f.read()
        elif not isinstance(event, str):
            event = json.dumps(event)
        p = self.run(["handle-event", "-"], extra_env, input=event)
        report = None
        if p.stdout.strip():
            report = json.loads(p.stdout)
        return p.returncode, report, p.stderr

    def run_reconcile(self, clusters=None, extra=None, force=False):
        """`eks-admin-sync reconcile` (optionally on some clusters only); returns (exit code, report, stderr)."""
        env = dict(extra or {})
        if clusters:
            env["CLUSTER_NAMES"] = clusters
        p = self.run(["reconcile"] + (["--force"] if force else []), env)
        return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr

    def kubeconfig(self, cluster, creds):
        """A kubeconfig whose exec plugin is `eks-admin-sync token`, as `aws eks update-kubeconfig` writes."""
        path = os.path.join(self.dir, f"kubeconfig-{cluster}-{creds['AWS_ACCESS_KEY_ID']}")
        env = [{"name": k, "value": v} for k, v in creds.items()]
        env += [{"name": "AWS_REGION", "value": REGION}, {"name": "AWS_ENDPOINT_URL_STS", "value": self.aws_url},
                {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
                {"name": "AWS_CONFIG_FILE", "value": os.devnull}, {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": os.devnull}]
        with open(path, "w") as f:
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": cluster, "cluster": {"server": self.api_url(cluster),
                                                           "certificate-authority": os.path.join(self.dir, "ca.crt")}}],
                "users": [{"name": "user", "user": {"exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1", "command": BINARY,
                    "args": ["token", "--cluster", cluster], "env": env, "interactiveMode": "Never"}}}],
                "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "user"}}],
                "current-context": cluster,
            }, f)
        return path

    def kubectl_as(self, cluster, creds, args):
        # A token is signed to the second, and kube-apiserver caches a token review that succeeded (even with
        # --authentication-token-webhook-cache-ttl=0s). So that no check passes or fails by timing, every
        # request after a run of the function uses a token signed in a later second than the run's end: one
        # that cannot have been accepted before a revocation.
        wait = math.floor(self.last_run_end) + 1 - time.time()
        if wait > 0:
            time.sleep(wait)
        return subprocess.run([KUBECTL, f"--kubeconfig={self.kubeconfig(cluster, creds)}"] + args,
                              capture_output=True, text=True, timeout=60, env={"PATH": os.environ.get("PATH", ""), "HOME": self.dir})

    def token_for(self, cluster, creds):
        p = subprocess.run([BINARY, "token", "--cluster", cluster], capture_output=True, text=True, timeout=30,
                           env={"PATH": os.environ.get("PATH", ""), "AWS_REGION": REGION, "AWS_ENDPOINT_URL_STS": self.aws_url,
                                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                                "AWS_SHARED_CREDENTIALS_FILE": os.devnull, **creds})
        if p.returncode != 0:
            raise RuntimeError(p.stderr)
        return json.loads(p.stdout)["status"]["token"]

    def create_user(self, name, tags=None, path="/"):
        iam = self.iam()
        iam.create_user(UserName=name, Path=path, Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])
        k = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AWS_ACCESS_KEY_ID": k["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": k["SecretAccessKey"]}

    def create_role(self, name, tags=None, path="/"):
        """A role people assume (trusting the account), with tags; returns its ARN."""
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]})
        r = self.iam().create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=trust,
                                   Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])
        return r["Role"]["Arn"]

    def sso_role(self, permission_set, suffix, region=None):
        """What IAM Identity Center makes in the account when a permission set is assigned; returns its ARN."""
        return self.emu("/_emu/iam/sso-role", {"permissionSet": permission_set, "suffix": suffix,
                                               **({"region": region} if region else {})})["Arn"]

    def delete_sso_role(self, name):
        req = urllib.request.Request(f"{self.aws_url}/_emu/iam/sso-role", data=json.dumps({"name": name}).encode(),
                                     method="DELETE")
        urllib.request.urlopen(req, timeout=10).read()

    def assume(self, role_arn, session):
        """Credentials of a session of the role, as `aws sts assume-role` gives them."""
        c = self.aws("sts").assume_role(RoleArn=role_arn, RoleSessionName=session)["Credentials"]
        return {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
                "AWS_SESSION_TOKEN": c["SessionToken"]}

    def event_probe(self, name="probe"):
        """A rule on the default bus routing eks-admin-sync's events to a fresh SQS queue; returns its URL."""
        sqs, events = self.aws("sqs"), self.aws("events")
        q = sqs.create_queue(QueueName=f"{name}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rule = f"{name}-{uuid.uuid4().hex[:8]}"
        events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["eks-admin-sync"]}))
        events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
        return q

    def drain(self, queue_url):
        """Every message on the queue, parsed (the EventBridge events), and deletes them."""
        sqs, out = self.aws("sqs"), []
        while True:
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not got:
                return out
            for m in got:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

    def delete_role(self, name):
        self.iam().delete_role(RoleName=name)

    def delete_user(self, name):
        iam = self.iam()
        for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
        iam.delete_user(UserName=name)

    def reset(self):
        """Back to the seeded state: no IAM users, aws-auth as bootstrapped, all clusters running."""
        iam = self.iam()
        for g in iam.list_groups()["Groups"]:
            for u in iam.get_group(GroupName=g["GroupName"])["Users"]:
                iam.remove_user_from_group(GroupName=g["GroupName"], UserName=u["UserName"])
            iam.delete_group(GroupName=g["GroupName"])
        for u in iam.list_users()["Users"]:
            self.delete_user(u["UserName"])
        for r in iam.list_roles()["Roles"]:
            if r["RoleName"] in (FUNCTION_ROLE, NODE_ROLE):
                tags = iam.list_role_tags(RoleName=r["RoleName"])["Tags"]
                if tags:
                    iam.untag_role(RoleName=r["RoleName"], TagKeys=[t["Key"] for t in tags])
                continue
            if r["Path"].startswith("/aws-reserved/"):
                self.delete_sso_role(r["RoleName"])
            else:
                self.delete_role(r["RoleName"])
        self.emu("/_emu/iam/page-cap", {"cap": 1000})
        self.emu("/_emu/faults", {})
        self.emu("/_emu/latency", {})
        self.emu("/_emu/events/fail-entries", {"count": 0})
        for c in self.clusters:
            if f"apiserver-{c}" not in self.procs:
                self.start_apiserver(c)
            self.register_cluster(c, reset_entries=True)
            self.seed_aws_auth(c)


# One cluster per EKS authentication mode (the access-entry suites).
THREE_MODES = {"cm": "CONFIG_MAP", "mixed": "API_AND_CONFIG_MAP", "api": "API"}


def json_lines(text):
    """The JSON-object lines of a stderr text (audit records, metric lines), parsed."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def audit_records(text):
    return [r for r in json_lines(text) if r.get("audit") == "eks-admin-sync/v1"]


def metric_lines(text):
    """The per-cluster metric lines (EMF) of a run."""
    return [r for r in json_lines(text) if "_aws" in r and "Cluster" in r]


def publish_metric_lines(text):
    """The metric line of a run's publishing to the event bus (EMF, dimension Deployment only)."""
    return [r for r in json_lines(text) if "_aws" in r and "EventsPublished" in r]


def map_users(cm):
    text = (cm.get("data") or {}).get("mapUsers") or "[]"
    return yaml.safe_load(text) or []


def record_annotation(deployment="default"):
    base = "eks-admin-sync/owned-user-arns"
    return base if deployment == "default" else f"{base}.{deployment}"


def record(cm, deployment="default"):
    """A deployment's ownership record: {"v": 2, "tagKey": ..., "arns": [...]} (None when absent)."""
    ann = (cm.get("metadata") or {}).get("annotations") or {}
    text = ann.get(record_annotation(deployment))
    return json.loads(text) if text else None


def owned(cm, deployment="default"):
    r = record(cm, deployment)
    if r is None:
        return []
    return r if isinstance(r, list) else r["arns"]


def ours(arn, username, groups=("system:masters",), deployment="default", source="tag:eks-cluster-admin"):
    """An entry as a deployment writes it: the grant, its mark and the source that made it."""
    row = {"userarn": arn, "username": username, "groups": list(groups), "eks-admin-sync": deployment}
    if source:
        row["eks-admin-sync-source"] = source
    return row


def force_payload(**extra):
    """A manual full reconcile forced by a person now (`force` carries the time it was made)."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"action": "reconcile", "force": True, "forceAt": now, **extra}


def no_ids(users):
    """Entries without the user id the function records (each IAM user's is unique and random here)."""
    return [{k: v for k, v in u.items() if k != "eks-admin-sync-user-id"} if isinstance(u, dict) else u
            for u in users]


ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"


def cluster_report(report, name):
    return next(c for c in report["clusters"] if c["cluster"] == name)


def ct_event(name, params, error=None):
    """A CloudTrail-via-EventBridge event shaped like the samples in events/."""
    with open(os.path.join(REPO, "events", "tag-user.json")) as f:
        ev = json.load(f)
    ev["detail"]["eventName"] = name
    ev["detail"]["requestParameters"] = params
    if error:
        ev["detail"]["errorCode"] = error
    return ev
