"""The report's sections as blocks: data, architectures, baseline vs CNN, studies, inside the CNN."""
from __future__ import annotations

from pathlib import Path

from training.models import ModelConfig

from . import eda, figures
from .analysis import StudySummary, count, pct_pm, top_confusions
from .architecture import block_sizes, describe
from .render import Bullets, Figure, Heading, Paragraph, Table
from .verdicts import conclusions

FASHION_MNIST_TEXT = (
    "Fashion-MNIST (Zalando Research) is a drop-in replacement for MNIST: 28x28 grayscale photographs of "
    "clothing and accessories in 10 classes, 60,000 for training and 10,000 for testing. It is harder than "
    "handwritten digits because several classes (shirt, T-shirt/top, pullover, coat) share their outline and "
    "differ in texture and detail.")


def _test_count(stats: dict, held_out: bool, tested: list[int] | None) -> str:
    """How many test images the runs were scored on, as the records say."""
    counts = "/".join(f"{n:,}" for n in tested or [])
    if held_out:
        return (f"{stats['num_train']:,} images with no test split of their own (each run held out "
                f"{counts or 'a stratified share'} of them as its test set)")
    scored = f", of which the runs scored {counts}" if tested and tested != [stats["num_test"]] else ""
    return f"{stats['num_train']:,} training and {stats['num_test']:,} test images{scored}"


def data_section(train, test, folder: Path, tested: list[int] | None = None) -> list:
    """The data set as read, and (`tested`) the test counts the records were scored on."""
    from training.data import FASHION_MNIST_CLASSES

    held_out = test is None
    test = train if held_out else test
    classes = list(train.classes)
    stats = eda.dataset_stats(train.images, train.labels, test.images, test.labels, classes)
    height, width, channels = stats["image_shape"]
    blocks = [Heading("Data")]
    if classes == list(FASHION_MNIST_CLASSES):
        blocks.append(Paragraph(FASHION_MNIST_TEXT))
    balance = ("Every class has the same number of images in both splits"
               if stats["balanced"] else
               f"Class sizes range from {min(stats['train_counts']):,} to {max(stats['train_counts']):,} (train)")
    blocks.append(Paragraph(
        f"This data set: {_test_count(stats, held_out, tested)} of "
        f"{height}x{width}x{channels} pixels in {stats['num_classes']} classes. {balance}. Pixel values are "
        f"0-255 with mean {stats['pixel_mean']:.1f} and standard deviation {stats['pixel_std']:.1f}; "
        f"{100 * stats['zero_fraction']:.1f} % of training pixels are exactly 0 (background). The brightest class "
        f"on average is {stats['brightest_class']}, the darkest {stats['darkest_class']}. Training divides pixels "
        "by 255; validation images are a stratified split of the training set, and the test set is only scored "
        "after training."))
    paths = {
        "figures/eda_class_distribution.png": eda.class_distribution(
            train.labels, test.labels, classes, folder / "figures/eda_class_distribution.png"),
        "figures/eda_samples.png": eda.sample_grid(train.images, train.labels, classes,
                                                   folder / "figures/eda_samples.png"),
        "figures/eda_mean_images.png": eda.mean_images(train.images, train.labels, classes,
                                                       folder / "figures/eda_mean_images.png"),
        "figures/eda_pixel_histogram.png": eda.pixel_histogram(train.images, test.images,
                                                               folder / "figures/eda_pixel_histogram.png"),
    }
    captions = ["Images per class in the training and test splits.",
                "The first eight training images of every class.",
                "Mean training image of each class: the average silhouette the classes differ by.",
                "Pixel intensity histogram (log scale): mostly background zeros, then a broad range of fabric tones."]
    blocks += [Figure(path, caption) for path, caption in zip(paths, captions)]
    return blocks


def results_table(study: StudySummary) -> Table:
    rows = []
    for setting in study.settings:
        rows.append([
            setting.label, str(setting.value), f"{setting.n}/{len(setting.run_ids)}",
            pct_pm(setting, "test_accuracy"), pct_pm(setting, "val_accuracy"),
            f"{setting.params:,}" if setting.n else "-", count(setting.flops) if setting.n else "-",
            f"{setting.seconds_per_epoch:.2f}" if setting.n else "-",
            f"{setting.mean('best_epoch'):.1f}" if setting.n else "-",
        ])
    return Table(["setting", study.factor, "seeds", "test acc. % (mean ± std)", "val. acc. % (mean ± std)",
                  "params", "FLOPs/image", "s/epoch", "best epoch"], rows,
                 caption=f"{study.title}: mean ± 1 sample std (n - 1 denominator) over the seeds counted in "
                         "the seeds column; every number from the run records.")


def _figure_name(study: StudySummary, what: str) -> str:
    return f"figures/study_{study.name}_{what}.png"


def study_section(study: StudySummary, folder: Path, level: int = 3) -> list:
    blocks = [Heading(study.title, level)]
    if study.question:
        blocks.append(Paragraph(f"Question: {study.question} Factor varied: `{study.factor}`; everything else "
                                "(data split, epochs, batch size, optimizer, learning-rate schedule, augmentation, "
                                "seeds) is the same for every setting."))
    for key, reason in study.adjustments.items():
        sizes = []
        for setting in study.settings:
            if setting.n and setting.config.get("model") == "cnn":
                shape = block_sizes(ModelConfig.from_dict(setting.config))
                sizes.append(f"{setting.label}: " + ", ".join(f"{h}x{w}" for h, w in shape))
        text = f"Fairness adjustment (`{key}` changes with `{study.factor}`): {reason}"
        if sizes:
            text += " Feature map size after each block, computed from the configs: " + "; ".join(sizes) + "."
        blocks.append(Paragraph(text))
    if study.recorded < study.planned:
        blocks.append(Paragraph(f"**Incomplete:** {study.recorded} of {study.planned} planned runs are recorded."))
    blocks.append(results_table(study))
    if not any(s.n for s in study.settings):
        return blocks
    blocks += [
        Figure(str(figures.study_accuracy(study, folder / _figure_name(study, "accuracy")).relative_to(folder)),
               f"{study.title}: test accuracy per setting. Each square is the mean over the n seeds under the "
               "setting's name, its error bar spans ±1 sample standard deviation of those n values, and the dots "
               "are the single seeds."),
        Figure(str(figures.study_cost(study, folder / _figure_name(study, "cost")).relative_to(folder)),
               f"{study.title}: test accuracy (mean ± 1 sample std over seeds) against parameter count and "
               "FLOPs per image (log scale)."),
        Figure(str(figures.study_time(study, folder / _figure_name(study, "time")).relative_to(folder)),
               f"{study.title}: seconds per training epoch (mean ± 1 sample std over the n seeds shown)."),
        Paragraph("What the numbers support:"),
        Bullets(conclusions(study)),
    ]
    return blocks


def architecture_section(baseline: StudySummary | None, cnn_record: dict | None) -> list:
    blocks = [Heading("Architectures")]
    described = []
    if baseline:
        described = [s.records[0] for s in baseline.settings if s.n]
    elif cnn_record:
        described = [cnn_record]
    for record in described:
        blocks.append(Paragraph(describe(record["config"], record["params"], record["flops_per_image"])))
    if not described:
        blocks.append(Paragraph("No run records yet."))
    return blocks


def baseline_section(baseline: StudySummary, classes: list[str], folder: Path) -> list:
    settings = baseline.settings
    blocks = study_section(baseline, folder, level=2)
    if not all(s.n for s in settings):
        return blocks
    blocks += [
        Figure(str(figures.parameter_counts(settings, folder / "figures/baseline_params.png").relative_to(folder)),
               "Parameters and FLOPs per image of the baseline and the CNN (log scale)."),
        Figure(str(figures.learning_curves(settings, folder / "figures/baseline_learning_curves.png")
                   .relative_to(folder)),
               "Learning curves: accuracy and loss per epoch, train (dashed) and validation (solid), mean over "
               "seeds with a ±1 std band."),
        Figure(str(figures.confusion_matrices(settings, classes, folder / "figures/baseline_confusion.png")
                   .relative_to(folder)),
               "Confusion matrices on the test set, pooled over seeds, each row normalised to 100 %."),
        Figure(str(figures.per_class(settings, classes, folder / "figures/baseline_per_class.png").relative_to(folder)),
               "Per-class test accuracy (recall): mean over the n seeds in the legend ± 1 sample std."),
        Paragraph("Most frequent confusions:"),
        Bullets([f"{s.label}: " + ("; ".join(top_confusions(s, classes)) or "none") for s in settings]),
    ]
    return blocks


def _provenance(record: dict, manifest: dict) -> Paragraph:
    return Paragraph(f"The CNN shown is run `{record['run_id']}` (seed {record['seed']}), {manifest['shown']} "
                     f"(validation accuracy {100 * record['val_accuracy']:.2f} %); the figures were drawn from that "
                     "model and are kept in the runs folder's model_figures/. "
                     f"Re-scored on its {manifest['test_images']:,} test images it reaches "
                     f"{100 * manifest['rescored_accuracy']:.2f} % (its record: {100 * record['test_accuracy']:.2f} %).")


def inside_section(record: dict, manifest: dict, paths: dict[str, str]) -> list:
    """First-layer filters, feature maps of one test image per class, Grad-CAM and the most confident
    mistakes of the base CNN, from its model figures."""
    sizes = ", ".join(manifest["block_sizes"])
    shown = ", ".join(f"{p['class']} {p['test_index']}" for p in manifest["per_class_images"])
    return [
        Heading("Inside the CNN"),
        _provenance(record, manifest),
        Paragraph("Its architecture: " + describe(record["config"], record["params"], record["flops_per_image"])),
        Figure(paths["filters"], "First-layer filters: each small image is one learned kernel (averaged over input "
                                 "channels)."),
        Figure(paths["feature_maps"],
               f"Feature maps of one test image per class (test images {shown}) after each conv block (height x "
               f"width x channels: {sizes}); in each block the same channels for every image, the ones most "
               "active over these images. A later block's units see a larger part of the image (receptive "
               "fields above)."),
        Figure(paths["grad_cam"],
               f"Grad-CAM of the same images: the output of {manifest['grad_cam_layer']} (the last conv block) "
               "weighted by the mean gradient of the predicted class's score with respect to it, rectified, "
               "scaled to 0-1 and resized to the image: the regions the prediction depends on most."),
        Heading("Misclassified examples"),
        Figure(paths["misclassified"],
               f"The most confident of the {manifest['mistakes']:,} test images (of {manifest['test_images']:,}) "
               "this model gets wrong, with its prediction and probability."),
        *new_photos_section(manifest, paths),
    ]


def new_photos_section(manifest: dict, paths: dict[str, str]) -> list:
    """The model on photo-like versions of test images, against the same images as tiles."""
    photos = manifest.get("new_photos")
    if not photos or "new_photos" not in paths:
        return []
    return [
        Heading("New photos"),
        Paragraph(f"The same model on the first {photos['images']:,} test images shown the way a phone photo "
                  "shows a garment: on a light background, tinted, off-centre, in a wider-than-tall frame, as a "
                  f"JPEG (convlab/photos.py, seed {photos['seed']}). Served through the handler every serving path "
                  f"shares: {100 * photos['photo']:.2f} % right on the photos, against {100 * photos['plain']:.2f} % "
                  f"on the same images as plain tiles ({photos['photo'] / photos['plain']:.2f}x). With the photo "
                  f"mapping turned off (photo_mapping=off) the photos score {100 * photos['photo_unmapped']:.2f} %: "
                  "the handler maps a photo into the data set's form (object found against its background, "
                  "cropped, centred, resized, background polarity matched) before the model sees it."),
        Figure(paths["new_photos"], "Photo-like test images, one per class, with the class the served model "
                                    "gives each."),
    ]
