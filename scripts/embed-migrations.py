#!/usr/bin/python3
"""Write a C file holding every migrations/NNNN_name.{up,down}.sql as a znp_migration_t table."""
import hashlib
import os
import re
import sys

NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")


def c_string(text):
    out = []
    for line in text.splitlines(keepends=True):
        escaped = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        out.append('    "%s"' % escaped)
    return "\n".join(out) if out else '    ""'


def main():
    src, dst = sys.argv[1], sys.argv[2]
    found = {}
    for entry in sorted(os.listdir(src)):
        m = NAME.match(entry)
        if not m:
            if entry.endswith(".sql"):
                sys.exit("embed-migrations: %s: name must be NNNN_name.up.sql or NNNN_name.down.sql" % entry)
            continue
        version, name, direction = int(m.group(1)), m.group(2), m.group(3)
        item = found.setdefault(version, {"name": name})
        if item["name"] != name:
            sys.exit("embed-migrations: version %04d has two names: %s and %s" % (version, item["name"], name))
        with open(os.path.join(src, entry), encoding="utf-8") as f:
            item[direction] = f.read()
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        sys.exit("embed-migrations: versions must be 0001, 0002, ... without gaps, found %s" % versions)
    for v in versions:
        for direction in ("up", "down"):
            if direction not in found[v]:
                sys.exit("embed-migrations: %04d_%s lacks its .%s.sql file" % (v, found[v]["name"], direction))
    lines = ["/* Generated at build time by scripts/embed-migrations.py. Do not edit. */",
             '#include "db/db.h"', "", "const znp_migration_t znp_migrations[] = {"]
    for v in versions:
        item = found[v]
        digest = hashlib.sha256(item["up"].encode("utf-8")).hexdigest()
        lines.append("    {%d, \"%s\",\n%s,\n%s,\n    \"%s\"}," % (v, item["name"], c_string(item["up"]),
                                                             c_string(item["down"]), digest))
    lines.append("};")
    lines.append("const size_t znp_migration_count = %d;" % len(versions))
    tmp = dst + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, dst)


if __name__ == "__main__":
    main()
