# Throughput vs devices, a line per strategy (and settings), with the ideal
# linear line N x throughput of the 1-device reference run.
# -e: nseries, nideal, devtics ("1,2,4"); datafile: docs/plots.md
load plotdir . '/common.gp'

set xlabel 'devices'
set ylabel 'throughput (samples/s)'
eval 'set xtics (' . devtics . ')'
set offsets graph 0.04, graph 0.04, graph 0.05, 0
set yrange [0:*]
set key outside right top vertical  # beside the lines, never over them

eval png_term
set output outbase . '.png'
series = 'for [i=0:nseries-1] datafile index i using 1:2 with linespoints lt (i%8)+1 dt 1+(i/8)%5 title columnheader(1)'
ideal = 'for [j=0:nideal-1] datafile index (nseries+j) using 1:2:3 with lines dt 2 lw 1.5 lc variable title columnheader(1)'
eval 'plot ' . series . (nideal > 0 ? ', ' . ideal : '')
eval svg_term
set output outbase . '.svg'
replot
set output
