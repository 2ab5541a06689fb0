# Communication per step and rank vs devices: a line per strategy (and
# settings) and volume column (study/plot_specs.c, pb_plot_comm_volume), a
# series' lines in its colour, a column's in its dash.
# -e: nlines, linelt and linedt (each line's linetype and dash type,
#     space-separated), devtics ("1,2,4"); datafile: docs/plots.md
load plotdir . '/common.gp'

set xlabel 'devices'
set ylabel 'sent per step and rank (MB)'
eval 'set xtics (' . devtics . ')'
set offsets graph 0.04, graph 0.04, graph 0.05, 0
set yrange [0:*]
set key outside right top vertical  # beside the lines, never over them

eval png_term
set output outbase . '.png'
plot for [i=0:nlines-1] datafile index i using 1:2 with linespoints lt (word(linelt, i+1)+0) dt 0+word(linedt, i+1) title columnheader(1)
eval svg_term
set output outbase . '.svg'
replot
set output
