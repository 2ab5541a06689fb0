# bench predict: predicted throughput (or scaling efficiency, eff=1) against
# devices, a line per strategy and variant, the measured runs as points of
# the same colour (docs/predict.md).
# -e: nblocks, eff; datafile: one block per series (its quoted name, then
# "devices samples_per_s measured_samples_per_s efficiency measured_efficiency",
# NaN where there is none)
load plotdir . '/common.gp'

set xlabel 'devices'
set logscale x 2
set grid xtics ytics lc rgb '#e0e0e0' lw 1
set key outside right top
set title ptitle . "\n" . psub
if (eff) {
    set ylabel 'scaling efficiency'
    set yrange [0:*]
    ycol = 4
} else {
    set ylabel 'samples/s'
    set logscale y 10
    ycol = 2
}
set datafile missing 'NaN'

eval png_term
set output outbase . '.png'
plot for [i=0:nblocks-1] datafile index i using 1:ycol with lines lt (i%8)+1 title columnheader(1), \
     for [i=0:nblocks-1] datafile index i using 1:ycol+1 with points lt (i%8)+1 notitle
eval svg_term
set output outbase . '.svg'
replot
set output
