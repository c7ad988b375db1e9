#!/usr/bin/python3
"""Writes Dovecot 2.4's form of the conf.d snippets from the 2.3 ones.

    tools/conf-dovecot24.py SRC_CONF_D OUT_DIR

2.4 has no plugin { } block (every dovekie_* key is a top-level setting,
declared by libdovekie_settings.so), appends to mail_plugins with a list
filter, selects fts backends with `fts NAME { }` (and needs a language),
and names the attribute dict in a mail_attribute block. The snippets are
written once, for 2.3; this rewrite keeps every comment and setting, so
the two cannot drift apart. It fails on a line it does not know how to
rewrite rather than ship a 2.3 line to a 2.4 server.
"""
import re
import sys
from pathlib import Path

HEADER = ("## (Dovecot 2.4 form, made from the Dovecot 2.3 snippet by "
          "tools/conf-dovecot24.py.)\n")


def plugins_block(prefix: str, names: list[str]) -> list[str]:
    return ([f"{prefix}mail_plugins {{"] + [f"{prefix}  {n} = yes" for n in names]
            + [f"{prefix}}}"])


def rewrite(text: str, name: str) -> str:
    out: list[str] = []
    in_plugin = False
    lines = text.splitlines()
    for line in lines:
        stripped = line.strip()
        m = re.match(r"^(#+\s*)mail_plugins = \$mail_plugins (.+)$", line)
        if m:
            out += plugins_block(m.group(1), m.group(2).split())
            continue
        m = re.match(r"^(#+\s*)mail_attribute_dict = file:%h/(\S+)$", line)
        if m:
            p = m.group(1)
            out += [f"{p}mail_attribute {{", f"{p}  dict file {{",
                    f"{p}    path = %{{home}}/{m.group(2)}", f"{p}  }}", f"{p}}}"]
            continue
        if stripped == "plugin {":
            if in_plugin:
                sys.exit(f"{name}: nested plugin block")
            in_plugin = True
            continue
        if in_plugin and line == "}":
            in_plugin = False
            continue
        if in_plugin:
            if line.startswith("  "):
                line = line[2:]
            m = re.match(r"^#fts = (\w+)$", line)
            if m:
                out += [f"#fts {m.group(1)} {{", "#}",
                        "# Dovecot 2.4's fts needs a default language, even for a backend",
                        "# that indexes whole text:", "#language en {", "#  default = yes", "#}"]
                continue
            out.append(line)
            continue
        out.append(line)
    if in_plugin:
        sys.exit(f"{name}: plugin block not closed")
    result = "\n".join(out) + "\n"
    # A documented example's plugin { } wrapper: keep the settings, drop the braces.
    result = re.sub(r"^(##\s+)plugin \{\n((?:##\s+.*\n)*?)##\s+\}\n",
                    lambda m: re.sub(r"^(##\s+)  ", r"\1", m.group(2), flags=re.M),
                    result, flags=re.M)
    # 2.4's metric grouping is a named list filter.
    result = re.sub(r"^(#+\s*)group_by = ([\w ]+)$",
                    lambda m: "\n".join(f"{m.group(1)}group_by {g} {{\n{m.group(1)}}}"
                                        for g in m.group(2).split()), result, flags=re.M)
    # 2.4's variables: %Ln (the user part, lower-cased).
    result = result.replace("= %Ln", "= %{user | username | lower}")
    # Mentions in the text: 2.4's name for the attribute dict.
    result = result.replace("mail_attribute_dict", "mail_attribute dict")
    result = re.sub(r"mail_plugins = \$mail_plugins ([\w ]+?)(;|\))",
                    lambda m: "mail_plugins { " + " ".join(f"{n} = yes" for n in m.group(1).split())
                    + " }" + m.group(2), result)
    for bad in ("plugin {", "$mail_plugins", "mail_attribute_dict", "%h/", "%L", "%u", "%n", "%d"):
        if bad in result:
            sys.exit(f"{name}: a 2.3-only form is left: {bad}")
    return HEADER + result


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.conf")):
        (out / path.name).write_text(rewrite(path.read_text(), path.name))


if __name__ == "__main__":
    main()
