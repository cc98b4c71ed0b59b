"""Pushes or pulls with the PyPI `oras` SDK, for gavel's interop tests.

push HOST REF FILE  -- FILE as one application/vnd.oci.image.layer.v1.tar+gzip
                       layer, config {} as application/vnd.oci.image.config.v1+json:
                       the `oras push` command OPA's docs give.
pull HOST REF DIR   -- every titled layer into DIR.
"""
import os
import sys

import oras.client


def main():
    op, host, target, path = sys.argv[1:5]
    client = oras.client.OrasClient(hostname=host, insecure=True)
    if op == "push":
        path = os.path.abspath(path)
        os.chdir(os.path.dirname(path))
        with open("config.json", "w") as f:
            f.write("{}")
        client.push(
            target=target,
            files=[os.path.basename(path) + ":application/vnd.oci.image.layer.v1.tar+gzip"],
            manifest_config="config.json:application/vnd.oci.image.config.v1+json",
            disable_path_validation=True,
        )
    elif op == "pull":
        client.pull(target=target, outdir=path)
    else:
        sys.exit("usage: push|pull HOST REF PATH")


if __name__ == "__main__":
    main()
