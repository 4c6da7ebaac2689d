#!/usr/bin/python3
"""Generate znp's C tables, protobuf-c code, bundled OpenAPI document and API docs from spec/.

Run as /usr/bin/python3 codegen/generate.py --root REPO --protoc-c PATH [--out DIR].

The generator first loads and validates every input and prints each problem as
"file: /json/pointer: message". It writes nothing and exits with status 1 when
there is any problem. Otherwise it renders every output in memory and then
writes each file through a temporary file and a rename, skipping files whose
bytes did not change so the build does not recompile them.
"""

import argparse
import os
import sys
import tempfile

# keep the source tree free of __pycache__ directories
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import model  # noqa: E402
import render  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="repository root that contains spec/ and codegen/")
    parser.add_argument("--protoc-c", default="protoc-c", help="path of the protoc-c executable")
    parser.add_argument("--out", default=None,
                        help="directory that receives generated/ and docs/ (default: the repository root)")
    parser.add_argument("--check", action="store_true", help="validate only, write nothing")
    return parser.parse_args(argv)


def write_if_changed(path, data):
    """Write `data` (bytes) to `path` through a temporary file and a rename; return True if it changed."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".codegen-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return True


def remove_stale(out_root, outputs):
    """Delete files under <out_root>/generated that this run did not produce; return their paths."""
    gen_dir = os.path.join(out_root, "generated")
    removed = []
    if not os.path.isdir(gen_dir):
        return removed
    for dirpath, _dirnames, filenames in os.walk(gen_dir):
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, out_root).replace(os.sep, "/")
            if rel not in outputs:
                os.unlink(full)
                removed.append(rel)
    return sorted(removed)


def main(argv):
    args = parse_args(argv)
    root = os.path.abspath(args.root)
    out_root = os.path.abspath(args.out) if args.out else root

    spec = model.load(root)
    if spec.problems:
        for problem in spec.problems:
            print(problem.format(), file=sys.stderr)
        print("codegen: %d problem(s) in spec/, nothing written" % len(spec.problems), file=sys.stderr)
        return 1
    if args.check:
        return 0

    try:
        outputs = render.render_all(spec, root, args.protoc_c)
    except render.RenderError as e:
        print("codegen: %s" % e, file=sys.stderr)
        return 1

    changed = 0
    for rel in sorted(outputs):
        if write_if_changed(os.path.join(out_root, rel), outputs[rel]):
            changed += 1
    removed = remove_stale(out_root, outputs)
    for rel in removed:
        print("codegen: removed stale %s" % rel)
    print("codegen: %d file(s) written, %d unchanged" % (changed, len(outputs) - changed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
