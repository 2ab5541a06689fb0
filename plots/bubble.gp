# mp's pipeline bubble: the measured share of the step a stage waits next to
# GPipe's (p-1)/(m+p-1), one group of bars per configuration (devices p,
# microbatches m).
# -e: nbars (bar columns 3..nbars+2: measured and/or theory, those some
#     configuration has), barlt (their linetypes), ymax (the axis top, above
#     the tallest bar), xrot; datafile: docs/plots.md
load plotdir . '/common.gp'

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border rgb '#333333'
set xlabel 'configuration (strategy xN devices, m microbatches)'
if (xrot == 0) { set bmargin 5; set xlabel offset 0, -1 }  # room for two-line labels
set ylabel 'pipeline bubble (% of step)'
set yrange [0:ymax]
set key outside right top vertical

eval png_term
set output outbase . '.png'
plot for [c=3:nbars+2] datafile using c:xtic(ticlabel(strcol(1), strcol(2))) lt (word(barlt, c-2)+0) title columnheader(c)
eval svg_term
set output outbase . '.svg'
replot
set output
