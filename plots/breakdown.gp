# Mean time per step of each phase, stacked, one bar per configuration
# (strategy, devices, settings); a marker at the measured mean step time.
# -e: nphases (stacked columns 3..nphases+2), phaselt (their linetypes,
#     space-separated), xrot; datafile: docs/plots.md
load plotdir . '/common.gp'

set style data histograms
set style histogram rowstacked
set style fill solid 0.9 border rgb '#333333'
set boxwidth 0.6
set xlabel 'configuration (strategy xN devices)'
if (xrot == 0) { set bmargin 5; set xlabel offset 0, -1 }  # room for two-line labels
set ylabel 'time per step (ms)'
set yrange [0:*]
set key outside right top vertical invert

eval png_term
set output outbase . '.png'
plot for [c=3:nphases+2] datafile using c:xtic(ticlabel(strcol(1), strcol(2))) lt (word(phaselt, c-2)+0) title columnheader(c), \
     datafile using 0:(column(nphases+3)) with points pt 2 ps 2 lw 2 lc rgb '#000000' title columnheader(nphases+3)
eval svg_term
set output outbase . '.svg'
replot
set output
