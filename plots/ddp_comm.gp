# DDP's gradient all-reduce per step: the part exposed (sync_ms) stacked on
# the part hidden behind backward (comm_ms - sync_ms), one bar per
# configuration; the overlap in % on the right axis.
# -e: xrot; datafile: docs/plots.md
load plotdir . '/common.gp'

set style data histograms
set style histogram rowstacked
set style fill solid 0.9 border rgb '#333333'
set boxwidth 0.6
set xlabel 'configuration (strategy xN devices)'
if (xrot == 0) { set bmargin 5; set xlabel offset 0, -1 }  # room for two-line labels
set ylabel 'all-reduce time per step (ms)'
set y2label 'overlap (% of all-reduce hidden)'
set yrange [0:*]
set y2range [0:105]
set y2tics 0, 20, 100
set key outside right top vertical

eval png_term
set output outbase . '.png'
plot datafile using 3:xtic(ticlabel(strcol(1), strcol(2))) lt 21 title columnheader(3), \
     '' using 4 lt 13 title columnheader(4), \
     '' using 0:5 axes x1y2 with linespoints lt 7 lw 1.5 pt 7 title columnheader(5)
eval svg_term
set output outbase . '.svg'
replot
set output
