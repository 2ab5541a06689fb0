# Baseline vs current: a metric per configuration from two CSVs, pairs of
# bars, the change of current against baseline written above each pair.
# -e: ylab (metric and unit), xrot; datafile: docs/plots.md
load plotdir . '/common.gp'

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border rgb '#333333'
set xlabel 'configuration (strategy xN devices)'
if (xrot == 0) { set bmargin 5; set xlabel offset 0, -1 }  # room for two-line labels
set ylabel ylab noenhanced
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set key outside right top vertical
higher(a, b) = a > b ? a : b

eval png_term
set output outbase . '.png'
plot datafile using 3:xtic(ticlabel(strcol(1), strcol(2))) lt 9 title columnheader(3), \
     '' using 4 lt 1 title columnheader(4), \
     '' using 0:(higher($3, $4)):(sprintf('%+.1f %%', $5)) with labels offset 0, 0.8 notitle
eval svg_term
set output outbase . '.svg'
replot
set output
