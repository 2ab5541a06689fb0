# Memory per device: the plan of each configuration's largest device by
# part (parameters, gradients, optimizer state, activations), stacked, one
# bar per configuration (strategy, devices, settings); the measured peak
# (peak_mem_mb) a point on it.
# -e: nbars (stacked columns 3..nbars+2: the parts some configuration has;
#     the peak is column nbars+3), barlt (their linetypes), ymax, xrot;
#     datafile: docs/plots.md
load plotdir . '/common.gp'

set style data histograms
set style histogram rowstacked
set style fill solid 0.9 border rgb '#333333'
set boxwidth 0.6
set xlabel 'configuration (strategy xN devices)'
if (xrot == 0) { set bmargin 5; set xlabel offset 0, -1 }  # room for two-line labels
set ylabel 'memory of the largest device (MB)'
set yrange [0:ymax]
set key outside right top vertical invert

eval png_term
set output outbase . '.png'
plot for [c=3:nbars+2] datafile using c:xtic(ticlabel(strcol(1), strcol(2))) lt (word(barlt, c-2)+0) title columnheader(c), \
     datafile using 0:(column(nbars+3)) with points pt 7 ps 1.6 lc rgb '#000000' title columnheader(nbars+3)
eval svg_term
set output outbase . '.svg'
replot
set output
