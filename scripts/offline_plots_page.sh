#!/usr/bin/env bash
# Build .dvc/offline_plots.html: the page `dvc plots show` / `dvc plots diff` render into, with
# the charting library (vega, vega-lite, vega-embed, the versions DVC's own page loads from a CDN)
# inlined, so the plots render with no network. .dvc/config points plots.html_template at it.
# Needs npm (the packages come from the npm registry); rerun to change versions.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packages=(vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2)
(cd "$work" && for package in "${packages[@]}"; do npm pack --silent "$package" > /dev/null; done)
page=.dvc/offline_plots.html
{
  printf '<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<title>DeepInterestGR plots</title>\n'
  printf '<!-- %s, inlined by scripts/offline_plots_page.sh -->\n' "${packages[*]}"
  for package in "${packages[@]}"; do
    name=${package%@*}
    printf '<script>\n'
    tar -xzOf "$work/$name-${package#*@}.tgz" "package/build/$name.min.js"
    printf '\n</script>\n'
  done
  printf '<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'
} > "$page"
echo "wrote $page ($(du -k "$page" | cut -f1) KB)"
