"""Start and stop an AWS simulator for tests.

    from simctl import Simulator
    with Simulator(delay_scale=0.02) as sim:
        sim.endpoint          # http://127.0.0.1:PORT
        sim.env()             # environment for /usr/bin/aws (credentials, region, ...)
        sim.state()           # GET /_kiln/state as a dict
        sim.set_faults(0.1, ["throttle", "500"])

or without a with-block: sim = simctl.start(delay_scale=0.02); ...; simctl.stop(sim).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
AKID = "AKIDKILNTEST"
SECRET = "kiln-test-secret"


class Simulator:
    def __init__(self, delay_scale=0.02, faults=None, seed=1, credentials=(), state_dir=None,
                 extra_args=(), verbose=False):
        self.delay_scale = delay_scale
        self.faults = faults
        self.seed = seed
        self.credentials = list(credentials)
        self.state_dir = state_dir
        self.extra_args = list(extra_args)
        self.verbose = verbose
        self.proc = None
        self.tmp = None
        self.port = None
        self.endpoint = None

    def start(self, timeout=15):
        self.tmp = tempfile.mkdtemp(prefix="awssim-test-")
        ready = os.path.join(self.tmp, "port")
        state = self.state_dir or os.path.join(self.tmp, "state")
        cmd = [sys.executable, os.path.join(HERE, "awssim.py"), "--host", "127.0.0.1",
               "--port", "0", "--ready-file", ready, "--state-dir", state,
               "--delay-scale", str(self.delay_scale), "--exit-with-parent"]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        if self.faults:
            cmd += ["--faults", self.faults]
        for c in self.credentials:
            cmd += ["--credentials", c]
        if self.verbose:
            cmd.append("--verbose")
        cmd += self.extra_args
        self.log_path = os.path.join(self.tmp, "sim.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("simulator did not start: %s" % self.read_log())
            time.sleep(0.02)
        with open(ready) as f:
            self.port = int(f.read().strip())
        self.endpoint = "http://127.0.0.1:%d" % self.port
        return self

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def env(self, region="us-east-1", akid=AKID, secret=SECRET, token=None):
        """Environment for running /usr/bin/aws against this simulator."""
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("AWS_"):
                del env[k]
        cfg = os.path.join(self.tmp, "aws-config")
        if not os.path.exists(cfg):
            with open(cfg, "w") as f:
                f.write("[default]\n")
        env.update({
            "AWSSIM_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": akid,
            "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": cfg,
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.tmp, "aws-credentials"),
            "AWS_PAGER": "", "HOME": self.tmp,
        })
        if token:
            env["AWS_SESSION_TOKEN"] = token
        return env

    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def state(self):
        return self.control("GET", "/_kiln/state")

    def set_faults(self, rate, kinds=("throttle", "500", "reset", "slow")):
        return self.control("POST", "/_kiln/faults", {"rate": rate, "kinds": list(kinds)})

    def reset(self):
        return self.control("POST", "/_kiln/reset", {})


def start(**kwargs):
    """Start a simulator in a temp dir; returns the Simulator (endpoint in .endpoint)."""
    return Simulator(**kwargs).start()


def stop(sim):
    sim.stop()
