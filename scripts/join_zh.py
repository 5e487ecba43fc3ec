"""Join the hard-wrapped lines of each paragraph of a Chinese lesson text (Markdown would put a space
between the two characters at every line break). Usage: python scripts/join_zh.py FILE.md ..."""
import sys

for path in sys.argv[1:]:
    out, fence = [], False
    for line in open(path, encoding="utf-8").read().splitlines():
        s = line.strip()
        if s.startswith("```"):
            fence = not fence
        plain = not fence and s and not s.startswith(("#", "- ", "* ", "|", ">", "```")) and not line.startswith("    ")
        prev = out[-1].strip() if out else ""
        prev_plain = prev and not prev.startswith(("#", "- ", "* ", "|", ">", "```")) and not fence
        if plain and prev_plain and out and not out[-1].startswith("    ") and not s.startswith("```"):
            out[-1] = out[-1].rstrip() + ("" if ord(prev[-1]) > 0x2e7f and ord(s[0]) > 0x2e7f else " ") + s
        else:
            out.append(line)
    open(path, "w", encoding="utf-8").write("\n".join(out) + "\n")
