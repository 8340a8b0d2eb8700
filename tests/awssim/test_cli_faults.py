"""Fault injection seen by the real AWS CLI: throttling, 500s, dropped connections and slow
responses; the CLI's own retries carry a 100 MiB multipart copy through a 10% fault rate,
and each service's throttling error is the one the CLI recognises and retries."""

import hashlib
import os
import subprocess
import unittest

from clitest import CliTest


class FaultsCli(CliTest):
    seed = 11

    def test_large_copy_survives_faults(self):
        self.aws("s3", "mb", "s3://kiln-faults")
        self.sim.set_faults(0.1, ["throttle", "500", "reset", "slow"])
        size = 100 * 1024 * 1024
        src = self.path("big.bin")
        with open(src, "wb") as f:
            for i in range(size // (1 << 20)):
                f.write(hashlib.sha256(b"f%d" % i).digest() * 32768)
        self.aws("s3", "cp", src, "s3://kiln-faults/big.bin", "--only-show-errors")
        dst = self.path("big.out")
        self.aws("s3", "cp", "s3://kiln-faults/big.bin", dst, "--only-show-errors")
        subprocess.run(["cmp", src, dst], check=True)
        st = self.sim.state()
        injected = st["faults"]["injected"]
        self.assertGreater(sum(injected.values()), 0, injected)
        self.assertEqual(st["s3"]["kiln-faults"]["objects"]["big.bin"]["size"], size)
        print("faults injected during 100 MiB up+down: %s" % injected)

    def throttled(self, args, code, env=None):
        self.sim.set_faults(1.0, ["throttle"])
        rc, err = self.aws_fail(*args, env=env)
        self.assertIn("(%s)" % code, err)
        self.assertIn("reached max retries", err)  # the CLI recognised it as retryable
        self.sim.set_faults(0.0)
        if args[0] == "ebs":  # without faults the snapshot is simply not there
            rc, err = self.aws_fail(*args, env=env)
            self.assertIn("ResourceNotFoundException", err)
        else:
            self.aws(*args, env=env)
        return self.sim.state()["faults"]["injected"]["throttle"]

    def test_throttling_per_service(self):
        n = self.throttled(("ec2", "describe-regions"), "RequestLimitExceeded")
        self.assertGreaterEqual(n, 2)
        self.throttled(("s3api", "list-buckets"), "SlowDown")
        self.throttled(("sts", "get-caller-identity"), "Throttling")
        self.throttled(("ebs", "list-snapshot-blocks", "--snapshot-id",
                        "snap-0123456789abcdef0"), "ThrottlingException")

    def test_internal_error_and_reset(self):
        self.sim.set_faults(1.0, ["500"])
        rc, err = self.aws_fail("ec2", "describe-regions")
        self.assertIn("(InternalError)", err)
        self.sim.set_faults(1.0, ["reset"])
        rc, err = self.aws_fail("s3api", "list-buckets", "--cli-read-timeout", "5")
        self.assertRegex(err, r"(Connection was closed|Could not connect|onnection)")
        st = self.sim.state()["faults"]
        self.assertGreater(st["injected"]["500"], 0)
        self.assertGreater(st["injected"]["reset"], 0)
        self.sim.set_faults(0.0)
        self.aws("ec2", "describe-regions")

    def test_faults_flag_and_reset(self):
        self.sim.stop()
        from simctl import Simulator
        self.sim = Simulator(delay_scale=0.02, faults="rate=1,kinds=500", seed=3).start()
        self.addCleanup(self.sim.stop)
        rc, err = self.aws_fail("sts", "get-caller-identity")
        self.assertIn("InternalError", err)
        st = self.sim.state()
        self.assertEqual(st["faults"]["rate"], 1.0)
        self.assertEqual(st["faults"]["kinds"], ["500"])
        self.sim.set_faults(0.0)
        self.aws("s3", "mb", "s3://kiln-reset")
        self.sim.reset()
        st = self.sim.state()
        self.assertEqual(st["s3"], {})
        self.assertEqual(st["requests"], {})


if __name__ == "__main__":
    unittest.main()
