"""MkDocs hook: the plots of the repository's plots/ folder become files of the site, so the
pages (written to read well on GitHub too) show them from plots/NAME.png without a copy in docs/."""

from pathlib import Path

from mkdocs.structure.files import File


def on_files(files, config):
    root = Path(config["config_file_path"]).parent
    for picture in sorted((root / "plots").glob("*.png")):
        files.append(File(f"plots/{picture.name}", src_dir=str(root), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files
