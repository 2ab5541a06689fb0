# DDP's gradient all-reduce per step: the part exposed (sync_ms) stacked on
# the part hidden behind backward (comm_ms - sync_ms), one bar per
# configuration; the overlap in % a point per bar on the right axis (no
# line: the configurations are not a sequence).
# -e: nbars (stacked columns 3..nbars+2: exposed and/or hidden, those some
#     configuration has; the overlap is column nbars+3), barlt (their
#     linetypes), ymax (the left axis top: five tic steps, as the right
#     axis's 0 to 100 by 20, so both meet the grid), xrot; datafile:
#     docs/plots.md
load plotdir . '/common.gp'

set style data histograms
set style histogram rowstacked
set style fill solid 0.9 border rgb '#333333'
set boxwidth 0.6
set xlabel 'configuration (strategy xN devices)'
if (xrot == 0) { set bmargin 5; set xlabel offset 0, -1 }  # room for two-line labels
set ylabel 'all-reduce time per step (ms)'
set y2label 'overlap (% of all-reduce hidden)'
set yrange [0:ymax]
set ytics 0, ymax / 5.0
set y2range [0:100]
set y2tics 0, 20, 100
set border 11 lc rgb '#444444'  # left, bottom and right: the right axis has its line
set key outside right top vertical

eval png_term
set output outbase . '.png'
plot for [c=3:nbars+2] datafile using c:xtic(ticlabel(strcol(1), strcol(2))) lt (word(barlt, c-2)+0) title columnheader(c), \
     datafile using 0:(column(nbars+3)) axes x1y2 with points lt 7 pt 7 ps 1.6 title columnheader(nbars+3)
eval svg_term
set output outbase . '.svg'
replot
set output
