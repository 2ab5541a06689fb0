# bench comm: bus bandwidth against message size, a line per collective
# (nccl-tests' busbw, docs/comm.md), sizes on a log2 axis.
# -e: ncoll; datafile: docs/plots.md (one block per collective: its name,
# then "bytes busbw_gbps" lines)
load plotdir . '/common.gp'

set xlabel 'message size (bytes)'
set ylabel 'bus bandwidth (GB/s)'
set logscale x 2
set format x '%.0b%B'
set yrange [0:*]
set grid xtics ytics lc rgb '#e0e0e0' lw 1
set key top left

eval png_term
set output outbase . '.png'
plot for [i=0:ncoll-1] datafile index i using 1:2 with linespoints lt (i%8)+1 title columnheader(1)
eval svg_term
set output outbase . '.svg'
replot
set output
