# bench predict: predicted throughput (or scaling efficiency, eff=1) against
# devices, a line per strategy and variant, the measured runs as points of
# their line's colour (docs/predict.md).
# -e: nblocks, eff, measfile, nmeasured; datafile: one block per series (its
# quoted name, then "devices samples_per_s efficiency" lines); measfile:
# "devices samples_per_s efficiency series" lines (series: the block's index)
load plotdir . '/common.gp'

set xlabel 'devices'
set logscale x 2
set grid xtics ytics lc rgb '#e0e0e0' lw 1
set key outside right top
set offsets graph 0.03, graph 0.03, graph 0.08, 0
if (eff) {
    set ylabel 'scaling efficiency'
    set yrange [0:*]
    ycol = 3
} else {
    set ylabel 'samples/s'
    set logscale y 10
    ycol = 2
}

eval png_term
set output outbase . '.png'
if (nmeasured > 0) {
    plot for [i=0:nblocks-1] datafile index i using 1:ycol with linespoints pt 6 lt (i%8)+1 title columnheader(1), \
         measfile using 1:ycol:(int($4)%8+1) with points pt 7 ps 1.6 lc variable title 'measured'
} else {
    plot for [i=0:nblocks-1] datafile index i using 1:ycol with linespoints pt 6 lt (i%8)+1 title columnheader(1)
}
eval svg_term
set output outbase . '.svg'
replot
set output
