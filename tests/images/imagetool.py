#!/usr/bin/env python3
"""Helpers for tests/images/build and tests/images/import (standard library only).

  imagetool.py archive --out OUT.tar --ref REF --config JSON --layer L.tar [--layer ...]
      Write a docker-archive ("docker save" layout) that `ctr images import`
      accepts: manifest.json, <sha256 of config>.json and <diff_id>/layer.tar
      for each layer. JSON is an object with the image config's `config`
      fields (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts) plus an
      optional "history" list of strings, one per layer. Deterministic: same
      layers and config give the same bytes.

  imagetool.py inspect ARCHIVE.tar
      Print "<ref> <config digest> <chain id of the top layer>" for each
      image in a docker-archive (what `import` compares with containerd).

  imagetool.py manifest-config
      Read an image manifest or index (JSON) on stdin and print the config
      digest of its linux/amd64 manifest (an index prints the manifest
      digest prefixed with "index "; the caller then reads that one).

  imagetool.py mirror SUITE
      Print the Debian mirror URL that the host's apt sources use for SUITE
      (one-line /etc/apt/sources.list{,.d/*.list} or deb822 *.sources);
      http://deb.debian.org/debian when none matches.

  imagetool.py recompile-pyc [--root DIR] PATH...
      Rewrite every existing __pycache__/*.pyc under DIR/PATH for its source
      as it is now, recording the file name the image will see (the path
      below DIR). The build sets every mtime to 0 first and the layer tar
      stores mtime 0, so timestamp pycs stay valid in the container and the
      bytes are reproducible. For the Debian base it runs inside the chroot,
      with the image's own python3.
"""

import argparse
import glob
import hashlib
import io
import json
import os
import re
import sys
import tarfile

EPOCH = "1970-01-01T00:00:00Z"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tarinfo(name, size, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def cmd_archive(args):
    spec = json.loads(args.config)
    history = spec.pop("history", None) or []
    layers = []
    for path in args.layer:
        digest = sha256_file(path)
        layers.append((path, digest))
    diff_ids = ["sha256:" + d for _, d in layers]
    if history and len(history) != len(layers):
        raise SystemExit("history needs one entry per layer")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": spec,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": EPOCH, "created_by": h or "tests/images/build"}
            for h in (history or [""] * len(layers))
        ],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    manifest = [
        {
            "Config": config_hex + ".json",
            "RepoTags": [args.ref],
            "Layers": [d + "/layer.tar" for _, d in layers],
        }
    ]
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()

    tmp = args.out + ".part"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
        seen = set()
        for path, digest in layers:
            if digest in seen:  # the same layer twice (empty layers): stored once
                continue
            seen.add(digest)
            d = _tarinfo(digest, 0, 0o755)
            d.type = tarfile.DIRTYPE
            out.addfile(d)
            with open(path, "rb") as f:
                out.addfile(_tarinfo(digest + "/layer.tar", os.fstat(f.fileno()).st_size), f)
        out.addfile(_tarinfo(config_hex + ".json", len(config_bytes)), io.BytesIO(config_bytes))
        out.addfile(_tarinfo("manifest.json", len(manifest_bytes)), io.BytesIO(manifest_bytes))
    os.replace(tmp, args.out)
    print("sha256:" + config_hex)


def chain_id(diff_ids):
    chain = diff_ids[0]
    for d in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256((chain + " " + d).encode()).hexdigest()
    return chain


def cmd_inspect(args):
    with tarfile.open(args.archive, "r:") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        for image in manifest:
            config_bytes = tar.extractfile(image["Config"]).read()
            config = json.loads(config_bytes)
            chain = chain_id(config["rootfs"]["diff_ids"])
            digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
            for ref in image.get("RepoTags") or []:
                print(ref, digest, chain)


def cmd_manifest_config(_args):
    doc = json.load(sys.stdin)
    if "manifests" in doc:  # an index: pick linux/amd64 (or the only one)
        chosen = None
        for m in doc["manifests"]:
            p = m.get("platform") or {}
            if p.get("os", "linux") == "linux" and p.get("architecture", "amd64") == "amd64":
                chosen = m
                break
        if chosen is None:
            raise SystemExit("no linux/amd64 manifest in index")
        print("index", chosen["digest"])
    else:
        print(doc["config"]["digest"])


def _apt_source_files():
    files = []
    if os.path.exists("/etc/apt/sources.list"):
        files.append("/etc/apt/sources.list")
    files += sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    files += sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    return files


def cmd_mirror(args):
    suite = args.suite
    for path in _apt_source_files():
        try:
            text = open(path, encoding="utf-8", errors="replace").read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                key = None
                for line in stanza.splitlines():
                    if line.startswith("#") or not line.strip():
                        continue
                    if line[0] in " \t" and key:
                        fields[key] += " " + line.strip()
                        continue
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in fields.get("types", "").split():
                    continue
                if suite not in fields.get("suites", "").split():
                    continue
                for uri in fields.get("uris", "").split():
                    if uri.startswith(("http://", "https://")):
                        print(uri.rstrip("/"))
                        return
        else:
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                line = re.sub(r"\[[^\]]*\]", " ", line)  # [arch=amd64 signed-by=...]
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite:
                    if parts[1].startswith(("http://", "https://")):
                        print(parts[1].rstrip("/"))
                        return
    print("http://deb.debian.org/debian")


def cmd_recompile_pyc(args):
    import py_compile

    tag = sys.implementation.cache_tag
    pat = re.compile(r"^(?P<name>.+)\.%s(?:\.opt-(?P<opt>[12]))?\.pyc$" % re.escape(tag))
    count = failed = 0
    top = os.path.abspath(args.root)
    for path in args.paths:
        for dirpath, _dirs, files in os.walk(os.path.join(top, path.lstrip("/"))):
            if os.path.basename(dirpath) != "__pycache__":
                continue
            for fname in files:
                m = pat.match(fname)
                if not m:
                    continue
                source = os.path.join(os.path.dirname(dirpath), m.group("name") + ".py")
                if not os.path.isfile(source):
                    continue
                cfile = os.path.join(dirpath, fname)
                opt = int(m.group("opt") or 0)
                try:
                    py_compile.compile(
                        source,
                        cfile=cfile,
                        dfile="/" + os.path.relpath(source, top),
                        doraise=True,
                        optimize=opt,
                        invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
                    )
                    count += 1
                except (py_compile.PyCompileError, SyntaxError, OSError):
                    failed += 1
    print("recompiled %d pyc files (%d failed)" % (count, failed), file=sys.stderr)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("archive")
    a.add_argument("--out", required=True)
    a.add_argument("--ref", required=True)
    a.add_argument("--config", required=True)
    a.add_argument("--layer", action="append", required=True)
    a.set_defaults(func=cmd_archive)
    i = sub.add_parser("inspect")
    i.add_argument("archive")
    i.set_defaults(func=cmd_inspect)
    c = sub.add_parser("manifest-config")
    c.set_defaults(func=cmd_manifest_config)
    m = sub.add_parser("mirror")
    m.add_argument("suite")
    m.set_defaults(func=cmd_mirror)
    r = sub.add_parser("recompile-pyc")
    r.add_argument("--root", default="/")
    r.add_argument("paths", nargs="+")
    r.set_defaults(func=cmd_recompile_pyc)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
