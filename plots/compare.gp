# Baseline vs current: a metric per configuration from two CSVs. A pair of
# bars per configuration: BASELINE grey, CURRENT coloured by bench compare's
# verdict (plot.c: regression, improvement, no change); each with its
# standard error (a vector with flat heads: gnuplot's errorbars leave a
# blank at the mean); behind them the no-change band (baseline +- the
# threshold); the change and the verdict written above.
# -e: ylab (metric and unit), npairs, bspread and cspread (1: BASELINE's,
#     CURRENT's side has an error bar somewhere), shades (the shades drawn:
#     0 no verdict, 1 no change, 2 regression, 3 improvement), band (the
#     threshold in %, 0: no band), xrot; datafile: docs/plots.md
load plotdir . '/common.gp'

# a value below 0 cannot stand on an axis from 0: fail (bench plot then
# leaves no image) rather than draw an empty frame
stats datafile using 3 nooutput name 'B'
stats datafile using 4 nooutput name 'C'
if (B_min < 0 || C_min < 0) { print 'compare.gp: a value below 0 cannot be drawn on an axis from 0'; exit status 1 }

shade_rgb(k) = k == 2 ? 0xD55E00 : k == 3 ? 0x009E73 : 0x0072B2
shade_name(k) = k == 2 ? 'current: regression' : k == 3 ? 'current: improvement' : \
                k == 1 ? 'current: no change (within the band, or noise)' : 'current'
set style fill solid 0.9 border rgb '#333333'
set xlabel 'configuration (strategy xN devices)'
if (xrot == 0) { set bmargin 5; set xlabel offset 0, -1 }  # room for two-line labels
set ylabel ylab noenhanced
set xrange [-0.6:npairs-0.4]
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0  # room for the change written above a pair
set key outside right top vertical
set xtics scale 0

w = 0.36
bandplot = band > 0 ? sprintf("datafile using 0:3:(0.47):($3*%g) with boxxyerror fs solid 0.25 noborder lc rgb '#9E9E9E' title sprintf('no-change band (baseline +- %g %%)'), ", band/100.0, band) : ''
bars = "datafile using ($0-w/2):3:(w):xtic(ticlabel(strcol(1), strcol(2))) with boxes lt 9 title 'baseline', " . \
       "datafile using ($0+w/2):4:(w):(shade_rgb($9)) with boxes lc rgb variable notitle, "
berrs = "datafile using ($0-w/2):($6 > 0 ? $3-$6 : NaN):(0):(2*$6) with vectors heads size screen 0.006,90 lc rgb '#000000' lw 1.2 notitle, "
cerrs = "datafile using ($0+w/2):($7 > 0 ? $4-$7 : NaN):(0):(2*$7) with vectors heads size screen 0.006,90 lc rgb '#000000' lw 1.2 notitle, "
keys = ''
do for [k in shades] { keys = keys . sprintf("NaN with boxes lc rgb %d title '%s', ", shade_rgb(k+0), shade_name(k+0)) }
labels = "datafile using 0:10:(sprintf('%+.1f %%' . (strlen(strcol(8)) ? '\n' . strcol(8) : ''), $5)) with labels offset 0, 2 notitle"

eval png_term
set output outbase . '.png'
eval 'plot ' . bandplot . bars . (bspread ? berrs : '') . (cspread ? cerrs : '') . keys . labels
eval svg_term
set output outbase . '.svg'
replot
set output
