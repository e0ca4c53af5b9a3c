"""MkDocs hooks, run by `mkdocs build`:

* the plots of the repository's plots/ folder become files of the site, so the pages (written
  to read well on GitHub too) show them from plots/NAME.png without a copy in docs/;
* maths written as on GitHub, `$...$` inline and `$$` blocks, becomes MathML at build time
  (latex2mathml), which browsers draw themselves: the site needs no script and no CDN to show
  an equation, offline included;
* a line `<!-- loop: NAME -->` becomes the source of the function NAME of nbnet/loops.py, read
  when the site is built (so the page cannot drift from the code), and a link to its fast
  kernel in the API reference when the line says one: `<!-- loop: NAME, kernel: NAME -->`.
"""

import ast
import re
from pathlib import Path

from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).parents[1]
# Code, which no maths or directive is looked for in: fenced blocks and `inline code`.
CODE = re.compile(r"(^ *```.*?^ *```[^\n]*$|`[^`\n]+`)", re.M | re.S)
BLOCK_MATH = re.compile(r"^\$\$\n(.+?)\n\$\$$", re.M | re.S)
# $...$ as GitHub reads it: no space just inside the dollars, no digit or dollar just outside.
INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])")
LOOP = re.compile(r"^<!-- loop: (\w+)(?:, kernel: (\w+))? -->$", re.M)
TOKEN = "nbnetmath{}x"  # what stands for a formula until the page is HTML (letters Markdown leaves alone)


def on_files(files, config):
    root = Path(config["config_file_path"]).parent
    for picture in sorted((root / "plots").glob("*.png")):
        files.append(File(f"plots/{picture.name}", src_dir=str(root), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    formulas = page.formulas = []

    def math(latex, display):
        try:
            # (in a displayed equation a sum's index goes under the sign, as LaTeX sets it)
            latex = latex.strip().replace("\\sum_", "\\sum\\limits_") if display else latex.strip()
            rendered = convert(latex, display="block" if display else "inline")
        except Exception as error:  # (latex2mathml raises its own kinds, one per fault)
            raise PluginError(f"{page.file.src_path}: cannot render ${latex}$: {error}") from error
        formulas.append(rendered)
        return TOKEN.format(len(formulas) - 1)

    def outside_code(text, change):
        return "".join(part if i % 2 else change(part) for i, part in enumerate(CODE.split(text)))

    markdown = outside_code(markdown, lambda part: LOOP.sub(lambda m: loop_source(m[1], m[2], page), part))
    return outside_code(markdown, lambda part: INLINE_MATH.sub(
        lambda m: math(m[1], False), BLOCK_MATH.sub(lambda m: "\n" + math(m[1], True) + "\n", part)))


def on_page_content(content, page, config, files):
    for index, rendered in enumerate(getattr(page, "formulas", [])):
        token = TOKEN.format(index)
        content = content.replace(f"<p>{token}</p>", f'<div class="math">{rendered}</div>').replace(token, rendered)
    return content


def loop_source(name, kernel, page):
    """The source of nbnet/loops.py's function `name` (decorators included) as a Python block,
    then the link to nbnet.kernels' `kernel` in the API reference."""
    path = ROOT / "nbnet" / "loops.py"
    source = path.read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            code = "\n".join(source.splitlines()[first - 1:node.end_lineno])
            link = (f"\n\nIts fast kernel: [`kernels.{kernel}`](api.md#nbnet.kernels.{kernel})."
                    if kernel else "")
            return f"```python\n# nbnet/loops.py\n{code}\n```{link}"
    raise PluginError(f"{page.file.src_path}: nbnet/loops.py has no function {name!r}")

