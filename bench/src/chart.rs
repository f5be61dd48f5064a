//! The SVG chart, drawn with plotters: text as SVG `<text>`, so no font files are needed.

use std::path::Path;

use plotters::prelude::*;

use crate::report::number;

/// A bar chart on a log scale: for each workload (`names`), its three `bars`, Python beside
/// Rust beside the limit; a missing figure leaves its bar out.
pub fn draw(
    path: &Path,
    names: &[&str],
    bars: &[[Option<f64>; 3]],
) -> Result<(), Box<dyn std::error::Error>> {
    let values = bars.iter().flatten().flatten().copied();
    let top = values.clone().fold(1.0, f64::max);
    let bottom = values.fold(top, f64::min);
    let (low, high) = (
        10f64.powf((bottom / 2.0).log10().floor()),
        10f64.powf((top * 2.0).log10().ceil()),
    );
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Operations per second, log scale (higher is better)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..names.len() as f64, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            let centred = (x - x.floor() - 0.5).abs() < 1e-6;
            if centred {
                names.get(i).map_or(String::new(), |n| n.to_string())
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| number(*y))
        .y_desc("ops/s")
        .draw()?;
    let series = [
        ("Python multiprocessing", RGBColor(55, 118, 171)),
        ("Rust, this workspace", RGBColor(222, 115, 40)),
        ("raw OS limit", RGBColor(150, 150, 150)),
    ];
    for (k, (label, colour)) in series.iter().enumerate() {
        let colour = *colour;
        let left = |i: usize| i as f64 + 0.12 + k as f64 * 0.26;
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, bar)| {
                let value = bar[k]?;
                Some(Rectangle::new(
                    [(left(i), low), (left(i) + 0.24, value)],
                    colour.filled(),
                ))
            }))?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
