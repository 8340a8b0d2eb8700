"""Base class for tests that drive the real AWS CLI (/usr/bin/aws) against a fresh simulator."""

import json
import os
import subprocess
import unittest

from simctl import Simulator

AWS = "/usr/bin/aws"


class CliError(AssertionError):
    pass


class CliTest(unittest.TestCase):
    delay_scale = 0.02
    faults = None
    seed = 7

    def setUp(self):
        if not os.access(AWS, os.X_OK):
            self.fail("%s is required for the cloud tests (Debian package awscli)" % AWS)
        self.sim = Simulator(delay_scale=self.delay_scale, faults=self.faults, seed=self.seed)
        self.sim.start()
        self.addCleanup(self.sim.stop)
        self.tmpdir = self.sim.tmp

    def run_aws(self, *args, region=None, env=None, timeout=300, input=None):
        e = self.sim.env(region=region or "us-east-1")
        if env:
            e.update(env)
        cmd = [AWS, "--endpoint-url", self.sim.endpoint] + [str(a) for a in args]
        return subprocess.run(cmd, env=e, capture_output=True, timeout=timeout, input=input)

    def aws(self, *args, **kw):
        """Run the CLI, require success, return stdout as text."""
        p = self.run_aws(*args, **kw)
        if p.returncode != 0:
            raise CliError("aws %s failed (%d): %s\nsimulator log:\n%s" % (
                " ".join(map(str, args)), p.returncode, p.stderr.decode(errors="replace"),
                self.sim.read_log()[-3000:]))
        return p.stdout.decode()

    def aws_json(self, *args, **kw):
        out = self.aws(*(list(args) + ["--output", "json"]), **kw)
        return json.loads(out) if out.strip() else None

    def aws_fail(self, *args, **kw):
        """Run the CLI, require failure; return (exit code, stderr text)."""
        p = self.run_aws(*args, **kw)
        self.assertNotEqual(p.returncode, 0, "aws %s unexpectedly succeeded: %s"
                            % (" ".join(map(str, args)), p.stdout.decode(errors="replace")))
        return p.returncode, p.stderr.decode(errors="replace")

    def path(self, name):
        return os.path.join(self.tmpdir, name)

    def write(self, name, data):
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def requests(self, op):
        return self.sim.state()["requests"].get(op, 0)
