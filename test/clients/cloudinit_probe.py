"""Runs one of cloud-init's real metadata readers against 169.254.169.254 and prints what it
returned as JSON. Run with Debian's /usr/bin/python3 inside a guest namespace:
    /usr/bin/python3 cloudinit_probe.py ec2|openstack|gce
"""
import json
import sys

from cloudinit import sources, util

# cloud-init's DNS-redirection probe resolves made-up names first; there is no DNS in a guest
# namespace, so skip the probe (an IP address needs no resolver).
util._DNS_REDIRECT_IP = set()

BASE = "http://169.254.169.254"


def text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v


def main(which):
    if which == "ec2":
        from cloudinit.sources.helpers import ec2

        md = ec2.get_instance_metadata(api_version="latest", metadata_address=BASE, timeout=5, retries=0)
        ud = ec2.get_instance_userdata(api_version="latest", metadata_address=BASE, timeout=5, retries=0)
        return {"meta-data": md, "user-data": text(ud)}
    if which == "openstack":
        from cloudinit.sources.helpers import openstack

        res = openstack.MetadataReader(BASE, timeout=5, retries=0).read_v2()
        res["userdata"] = text(res.get("userdata"))
        return res
    if which == "gce":
        from cloudinit.sources import DataSourceGCE as gce

        params = sources.URLParams(max_wait_seconds=10, timeout_seconds=5, num_retries=0, sec_between_retries=1)
        res = gce.read_md(address=BASE + "/computeMetadata/v1/", url_params=params, platform_check=False)
        res["user-data"] = text(res.get("user-data"))
        if res.get("meta-data"):
            # What the datasource would install for the default user.
            res["ssh-keys"] = gce._parse_public_keys(res["meta-data"]["public-keys-data"])
        return res
    raise SystemExit("usage: cloudinit_probe.py ec2|openstack|gce")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), default=text, sort_keys=True))
