"""EC2 through the real AWS CLI: regions, instance lifecycle with waiters, images (create,
describe, attributes, cross-region copy, deregister), snapshots, tags, import-snapshot,
pagination and error responses."""

import time
import unittest

from clitest import CliTest


class Ec2Base(CliTest):
    delay_scale = 0.05

    def public_image(self, region=None):
        return self.aws("ec2", "describe-images", "--owners", "amazon", "--filters",
                        "Name=name,Values=debian-12-amd64-*", "--query", "Images[0].ImageId",
                        "--output", "text", region=region).strip()

    def launch(self, count=1, name="kiln-build"):
        out = self.aws_json("ec2", "run-instances", "--image-id", self.public_image(),
                            "--instance-type", "t3.micro", "--count", count,
                            "--tag-specifications",
                            "ResourceType=instance,Tags=[{Key=Name,Value=%s}]" % name)
        return [i["InstanceId"] for i in out["Instances"]], out

    def state_of(self, iid):
        return self.aws("ec2", "describe-instances", "--instance-ids", iid, "--query",
                        "Reservations[0].Instances[0].State.Name", "--output", "text").strip()



class Ec2Cli(Ec2Base):
    def test_describe_regions(self):
        out = self.aws_json("ec2", "describe-regions")
        names = {r["RegionName"] for r in out["Regions"]}
        self.assertIn("us-east-1", names)
        self.assertIn("eu-west-1", names)
        self.assertTrue(all(r["Endpoint"].startswith("ec2.") for r in out["Regions"]))
        out = self.aws_json("ec2", "describe-regions", "--region-names", "eu-west-1")
        self.assertEqual([r["RegionName"] for r in out["Regions"]], ["eu-west-1"])
        code, err = self.aws_fail("ec2", "describe-regions", "--filters", "Name=bogus,Values=x")
        self.assertIn("InvalidParameterValue", err)
        self.assertEqual(self.requests("ec2:DescribeRegions"), 3)

    def test_instance_lifecycle(self):
        ids, out = self.launch()
        iid = ids[0]
        self.assertEqual(out["Instances"][0]["State"]["Name"], "pending")
        self.assertEqual(out["Instances"][0]["Tags"], [{"Key": "Name", "Value": "kiln-build"}])
        self.aws("ec2", "wait", "instance-running", "--instance-ids", iid)
        self.assertEqual(self.state_of(iid), "running")
        found = self.aws_json("ec2", "describe-instances", "--filters",
                              "Name=tag:Name,Values=kiln-*",
                              "Name=instance-state-name,Values=running")
        self.assertEqual([i["InstanceId"] for r in found["Reservations"]
                          for i in r["Instances"]], [iid])
        none = self.aws_json("ec2", "describe-instances", "--filters",
                             "Name=instance-state-name,Values=stopped")
        self.assertEqual(none["Reservations"], [])
        self.aws("ec2", "create-tags", "--resources", iid, "--tags", "Key=stage,Value=test")
        tags = self.aws_json("ec2", "describe-tags", "--filters",
                             "Name=resource-id,Values=" + iid)["Tags"]
        self.assertEqual({(t["Key"], t["Value"]) for t in tags},
                         {("Name", "kiln-build"), ("stage", "test")})
        self.assertEqual(len(self.aws_json("ec2", "describe-instances", "--filters",
                                           "Name=tag-key,Values=stage")["Reservations"]), 1)
        stop = self.aws_json("ec2", "stop-instances", "--instance-ids", iid)
        self.assertEqual(stop["StoppingInstances"][0]["CurrentState"]["Name"], "stopping")
        self.assertEqual(stop["StoppingInstances"][0]["PreviousState"]["Name"], "running")
        self.aws("ec2", "wait", "instance-stopped", "--instance-ids", iid)
        self.assertEqual(self.state_of(iid), "stopped")
        term = self.aws_json("ec2", "terminate-instances", "--instance-ids", iid)
        self.assertEqual(term["TerminatingInstances"][0]["CurrentState"]["Name"],
                         "shutting-down")
        self.aws("ec2", "wait", "instance-terminated", "--instance-ids", iid)
        self.assertEqual(self.state_of(iid), "terminated")
        code, err = self.aws_fail("ec2", "start-instances", "--instance-ids", iid)
        self.assertIn("IncorrectInstanceState", err)
        code, err = self.aws_fail("ec2", "describe-instances", "--instance-ids",
                                  "i-0123456789abcdef0")
        self.assertEqual(code, 254)
        self.assertIn("InvalidInstanceID.NotFound", err)

    def test_image_lifecycle_and_copy(self):
        ids, _ = self.launch()
        iid = ids[0]
        self.aws("ec2", "wait", "instance-running", "--instance-ids", iid)
        ami = self.aws("ec2", "create-image", "--instance-id", iid, "--name", "kiln-img-1",
                       "--description", "first", "--query", "ImageId", "--output",
                       "text").strip()
        self.assertTrue(ami.startswith("ami-"))
        img = self.aws_json("ec2", "describe-images", "--image-ids", ami)["Images"][0]
        self.assertEqual(img["State"], "pending")
        self.aws("ec2", "wait", "image-available", "--image-ids", ami)
        mine = self.aws_json("ec2", "describe-images", "--owners", "self")["Images"]
        self.assertEqual([i["ImageId"] for i in mine], [ami])
        self.assertEqual(mine[0]["State"], "available")
        self.assertFalse(mine[0]["Public"])
        code, err = self.aws_fail("ec2", "create-image", "--instance-id", iid, "--name",
                                  "kiln-img-1")
        self.assertIn("InvalidAMIName.Duplicate", err)
        by_name = self.aws_json("ec2", "describe-images", "--owners", "self", "--filters",
                                "Name=name,Values=kiln-img-?", "Name=state,Values=available")
        self.assertEqual(len(by_name["Images"]), 1)

        self.aws("ec2", "modify-image-attribute", "--image-id", ami, "--launch-permission",
                 "Add=[{Group=all},{UserId=210987654321}]")
        perms = self.aws_json("ec2", "describe-image-attribute", "--image-id", ami,
                              "--attribute", "launchPermission")["LaunchPermissions"]
        self.assertIn({"Group": "all"}, perms)
        self.assertIn({"UserId": "210987654321"}, perms)
        self.assertTrue(self.aws_json("ec2", "describe-images", "--image-ids",
                                      ami)["Images"][0]["Public"])
        self.aws("ec2", "modify-image-attribute", "--image-id", ami, "--attribute",
                 "launchPermission", "--operation-type", "remove", "--user-groups", "all")
        perms = self.aws_json("ec2", "describe-image-attribute", "--image-id", ami,
                              "--attribute", "launchPermission")["LaunchPermissions"]
        self.assertEqual(perms, [{"UserId": "210987654321"}])
        self.aws("ec2", "modify-image-attribute", "--image-id", ami, "--description",
                 "Value=second")
        desc = self.aws_json("ec2", "describe-image-attribute", "--image-id", ami,
                             "--attribute", "description")["Description"]["Value"]
        self.assertEqual(desc, "second")

        copy = self.aws("ec2", "copy-image", "--source-region", "us-east-1",
                        "--source-image-id", ami, "--name", "kiln-img-1-copy", "--query",
                        "ImageId", "--output", "text", region="eu-west-1").strip()
        self.aws("ec2", "wait", "image-available", "--image-ids", copy, region="eu-west-1")
        eu = self.aws_json("ec2", "describe-images", "--owners", "self",
                           region="eu-west-1")["Images"]
        self.assertEqual([i["ImageId"] for i in eu], [copy])
        eu_snap = eu[0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
        snaps = self.aws_json("ec2", "describe-snapshots", "--snapshot-ids", eu_snap,
                              region="eu-west-1")["Snapshots"]
        self.assertEqual(snaps[0]["State"], "completed")
        code, err = self.aws_fail("ec2", "describe-images", "--image-ids", copy)
        self.assertIn("InvalidAMIID.NotFound", err)  # the copy lives in eu-west-1 only
        state = self.sim.state()["regions"]
        self.assertIn(copy, state["eu-west-1"]["images"])
        self.assertNotIn(copy, state["us-east-1"]["images"])

        self.aws("ec2", "deregister-image", "--image-id", ami)
        code, err = self.aws_fail("ec2", "describe-images", "--image-ids", ami)
        self.assertEqual(code, 254)
        self.assertIn("InvalidAMIID.NotFound", err)
        self.aws("ec2", "terminate-instances", "--instance-ids", iid)

    def test_snapshots(self):
        ids, _ = self.launch()
        self.aws("ec2", "wait", "instance-running", "--instance-ids", ids[0])
        ami = self.aws("ec2", "create-image", "--instance-id", ids[0], "--name", "snaptest",
                       "--query", "ImageId", "--output", "text").strip()
        self.aws("ec2", "wait", "image-available", "--image-ids", ami)
        snaps = self.aws_json("ec2", "describe-snapshots", "--owner-ids", "self")["Snapshots"]
        self.assertEqual(len(snaps), 1)
        sid = snaps[0]["SnapshotId"]
        self.assertEqual(snaps[0]["State"], "completed")
        self.assertIn(ami, snaps[0]["Description"])
        code, err = self.aws_fail("ec2", "delete-snapshot", "--snapshot-id", sid)
        self.assertIn("InvalidSnapshot.InUse", err)
        self.aws("ec2", "modify-snapshot-attribute", "--snapshot-id", sid, "--attribute",
                 "createVolumePermission", "--operation-type", "add", "--user-ids",
                 "210987654321")
        perms = self.aws_json("ec2", "describe-snapshot-attribute", "--snapshot-id", sid,
                              "--attribute", "createVolumePermission")
        self.assertEqual(perms["CreateVolumePermissions"], [{"UserId": "210987654321"}])
        self.aws("ec2", "deregister-image", "--image-id", ami)
        self.aws("ec2", "delete-snapshot", "--snapshot-id", sid)
        code, err = self.aws_fail("ec2", "describe-snapshots", "--snapshot-ids", sid)
        self.assertIn("InvalidSnapshot.NotFound", err)
        self.assertEqual(self.aws_json("ec2", "describe-snapshots", "--owner-ids",
                                       "self")["Snapshots"], [])

    def test_pagination(self):
        ids, _ = self.launch(count=7)
        before = self.requests("ec2:DescribeInstances")
        out = self.aws_json("ec2", "describe-instances", "--page-size", "5")
        got = [i["InstanceId"] for r in out["Reservations"] for i in r["Instances"]]
        self.assertEqual(sorted(got), sorted(ids))
        self.assertEqual(self.requests("ec2:DescribeInstances") - before, 2)
        tags = self.aws_json("ec2", "describe-tags", "--max-items", "3")
        self.assertEqual(len(tags["Tags"]), 3)
        self.assertIn("NextToken", tags)
        code, err = self.aws_fail("ec2", "describe-instances", "--instance-ids", ids[0],
                                  "--max-results", "5")
        self.assertIn("InvalidParameterCombination", err)

    def test_error_format(self):
        code, err = self.aws_fail("ec2", "run-instances", "--image-id",
                                  "ami-0000000000000000f", "--count", "1")
        self.assertEqual(code, 254)
        self.assertIn("An error occurred (InvalidAMIID.NotFound) when calling the RunInstances "
                      "operation: The image id '[ami-0000000000000000f]' does not exist", err)
        code, err = self.aws_fail("ec2", "describe-images", "--image-ids", "bogus")
        self.assertIn("InvalidAMIID.Malformed", err)
        code, err = self.aws_fail("ec2", "run-instances", "--image-id", self.public_image(),
                                  "--count", "1", "--dry-run")
        self.assertIn("DryRunOperation", err)


class Ec2ImportCli(Ec2Base):
    """Imports run with slower delays so that the active phase is seen under load."""
    delay_scale = 0.25

    def test_import_snapshot_and_register(self):
        self.aws("s3", "mb", "s3://kiln-import")
        disk = bytearray(3 * 1024 * 1024)
        disk[0:512] = b"\x55" * 512          # block 0
        disk[2 * 524288 + 7] = 0xAA          # block 2; block 1 stays zero
        self.write("disk.raw", bytes(disk))
        self.aws("s3", "cp", self.path("disk.raw"), "s3://kiln-import/disk.raw")
        task = self.aws_json("ec2", "import-snapshot", "--description", "kiln root",
                             "--disk-container",
                             "Format=RAW,UserBucket={S3Bucket=kiln-import,S3Key=disk.raw}")
        tid = task["ImportTaskId"]
        self.assertEqual(task["SnapshotTaskDetail"]["Status"], "active")
        seen_active = False
        deadline = time.time() + 60
        while True:
            t = self.aws_json("ec2", "describe-import-snapshot-tasks", "--import-task-ids",
                              tid)["ImportSnapshotTasks"][0]["SnapshotTaskDetail"]
            if t["Status"] == "active":
                seen_active = True
                self.assertTrue(0 <= int(t["Progress"]) < 100)
            if t["Status"] == "completed":
                break
            self.assertLess(time.time(), deadline, "import did not complete")
            time.sleep(0.3)
        self.assertTrue(seen_active)
        sid = t["SnapshotId"]
        self.assertEqual(t["DiskImageSize"], float(len(disk)))
        snap = self.aws_json("ec2", "describe-snapshots", "--snapshot-ids", sid)["Snapshots"][0]
        self.assertEqual((snap["State"], snap["VolumeSize"]), ("completed", 1))
        ami = self.aws("ec2", "register-image", "--name", "kiln-imported", "--architecture",
                       "x86_64", "--root-device-name", "/dev/xvda", "--virtualization-type",
                       "hvm", "--ena-support", "--block-device-mappings",
                       "DeviceName=/dev/xvda,Ebs={SnapshotId=%s,VolumeType=gp3}" % sid,
                       "--query", "ImageId", "--output", "text").strip()
        self.aws("ec2", "wait", "image-available", "--image-ids", ami)
        # The imported bytes are readable through the EBS direct APIs.
        blocks = self.aws_json("ebs", "list-snapshot-blocks", "--snapshot-id", sid)["Blocks"]
        self.assertEqual([b["BlockIndex"] for b in blocks], [0, 2])
        self.aws("ebs", "get-snapshot-block", "--snapshot-id", sid, "--block-index", 2,
                 "--block-token", blocks[1]["BlockToken"], self.path("b2"))
        self.assertEqual(self.read("b2"), bytes(disk[2 * 524288:3 * 524288]))
        code, err = self.aws_fail("ec2", "register-image", "--name", "kiln-imported",
                                  "--root-device-name", "/dev/xvda", "--block-device-mappings",
                                  "DeviceName=/dev/xvda,Ebs={SnapshotId=%s}" % sid)
        self.assertIn("InvalidAMIName.Duplicate", err)

    def test_import_snapshot_missing_object(self):
        self.aws("s3", "mb", "s3://kiln-import")
        tid = self.aws("ec2", "import-snapshot", "--disk-container",
                       "Format=RAW,UserBucket={S3Bucket=kiln-import,S3Key=nope.raw}",
                       "--query", "ImportTaskId", "--output", "text").strip()
        deadline = time.time() + 30
        while True:
            t = self.aws_json("ec2", "describe-import-snapshot-tasks", "--import-task-ids",
                              tid)["ImportSnapshotTasks"][0]["SnapshotTaskDetail"]
            if t["Status"] != "active":
                break
            self.assertLess(time.time(), deadline)
            time.sleep(0.3)
        self.assertEqual(t["Status"], "deleted")
        self.assertIn("ClientError", t["StatusMessage"])


if __name__ == "__main__":
    unittest.main()
