# Shared settings of the parbench plots; every plots/*.gp loads it first.
#
# `bench plot` (study/plot.c) sets these with -e before the script runs:
#   plotdir   this folder
#   datafile  the .dat file the script draws (formats: docs/plots.md)
#   outbase   output path without extension; the script writes .png and .svg
#   ntitle    how many title lines follow, each short enough for the canvas
#   title1..  the lines: what, workload, backend, device, date; then the
#             settings every plotted run shares
# (by hand, ptitle and psub instead: the title and a second line, unwrapped)
# and per script the numbers it names in its header.

if (!exists("psub")) psub = ""
if (!exists("xrot")) xrot = 0

# pngcairo where gnuplot has it (anti-aliased), else libgd's png
png_term = (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) \
    ? "set terminal pngcairo size 1100,640 font 'Sans,10' noenhanced background rgb 'white'" \
    : "set terminal png size 1100,640 noenhanced"
svg_term = "set terminal svg size 1100,640 font 'Sans,10' noenhanced background rgb 'white'"

# Okabe-Ito colours (colour-blind safe) for series; 9 is the grey of
# references (ideal lines, baselines)
set linetype 1 lc rgb '#0072B2' lw 2 pt 7 ps 1.3
set linetype 2 lc rgb '#D55E00' lw 2 pt 5 ps 1.3
set linetype 3 lc rgb '#009E73' lw 2 pt 9 ps 1.5
set linetype 4 lc rgb '#CC79A7' lw 2 pt 11 ps 1.5
set linetype 5 lc rgb '#E69F00' lw 2 pt 13 ps 1.5
set linetype 6 lc rgb '#56B4E9' lw 2 pt 7 ps 1.3
set linetype 7 lc rgb '#000000' lw 2 pt 5 ps 1.3
set linetype 8 lc rgb '#F0E442' lw 2 pt 9 ps 1.5
set linetype 9 lc rgb '#777777' lw 1.5 pt 6 ps 1.3

# One fixed colour per phase, the same in every plot (study/plot.c names
# them by these numbers): load h2d scatter replicate fwd gather bwd reduce
# p2p bubble sync opt other, and tp_comm (24)
set linetype 11 lc rgb '#BBBBBB'
set linetype 12 lc rgb '#CC79A7'
set linetype 13 lc rgb '#88CCEE'
set linetype 14 lc rgb '#44AA99'
set linetype 15 lc rgb '#0072B2'
set linetype 16 lc rgb '#117733'
set linetype 17 lc rgb '#D55E00'
set linetype 18 lc rgb '#AA4499'
set linetype 19 lc rgb '#882255'
set linetype 20 lc rgb '#F0E442'
set linetype 21 lc rgb '#E69F00'
set linetype 22 lc rgb '#009E73'
set linetype 23 lc rgb '#555555'
set linetype 24 lc rgb '#332288'

if (exists("ntitle")) {
    ptitle = title1
    do for [i=2:ntitle] { ptitle = ptitle . "\n" . value(sprintf("title%d", i)) }
} else {
    if (strlen(psub) > 0) { ptitle = ptitle . "\n" . psub }
}
set title ptitle noenhanced font ',11'
set key noenhanced box lc rgb '#cccccc' opaque autotitle columnheader
set border 3 lc rgb '#444444'
set tics nomirror
set grid ytics lc rgb '#e0e0e0' lw 1
set datafile missing 'NaN'
if (!exists("xlead")) xlead = 0
if (xrot != 0) set xtics rotate by xrot right noenhanced; else set xtics norotate noenhanced
# a turned first label reaches left of its tic: the margin holds it
if (xrot != 0 && xlead > 10) set lmargin xlead

# A bar's label from the .dat file's first two columns ("ddp x4", "bf16"):
# two lines, or one when the tic labels are rotated
ticlabel(a, b) = strlen(b) == 0 ? a : a . (xrot != 0 ? ", " : "\n") . b
