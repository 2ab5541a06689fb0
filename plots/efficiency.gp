# Scaling efficiency vs devices: throughput(N) / (N x throughput(1)) in %,
# a line per strategy (and settings), 100 % marked.
# -e: nseries, ymax, devtics; datafile: docs/plots.md
load plotdir . '/common.gp'

set xlabel 'devices'
set ylabel 'scaling efficiency (%)'
eval 'set xtics (' . devtics . ')'
set offsets graph 0.04, graph 0.04, 0, 0
set yrange [0:ymax]
set key outside right top vertical  # beside the lines, never over them

eval png_term
set output outbase . '.png'
plot for [i=0:nseries-1] datafile index i using 1:2 with linespoints lt (i%8)+1 dt 1+(i/8)%5 title columnheader(1), \
     100 with lines lt 9 dt 2 title 'ideal (100 %)'
eval svg_term
set output outbase . '.svg'
replot
set output
