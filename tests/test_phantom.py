"""The procedural thorax phantom: determinism, anatomy, view consistency and what each finding changes."""

import subprocess
import sys

import numpy as np
import pytest

from benchmark.data.phantom import RENDERER_VERSION, build_case, is_modelled, render_case
from benchmark.data.phantom.anatomy import cardiothoracic_ratio
from benchmark.data.phantom.render import make_views
from benchmark.data.reports import Finding

SIZE = 256
F = Finding.parse


def render(case_id="case-7", tags=(), seed=0, size=SIZE):
    return render_case(case_id, [F(t) for t in tags], seed=seed, size=size)


def diff(a, b):
    return a.astype(np.int16) - b.astype(np.int16)


def pixel(case_id, point, view="frontal", tags=(), size=SIZE):
    """(row, col) of a 3D patient point in one view."""
    anat = build_case(case_id, [F(t) for t in tags])[0]
    col, row, _ = make_views(anat, size)[view].to_image(np.asarray(point, float))
    return int(round(row)), int(round(col))


@pytest.fixture(scope="module")
def normal():
    return render()


# ------------------------------------------------------------------------------------ basics


def test_shape_dtype_range_and_version(normal):
    assert isinstance(RENDERER_VERSION, str) and RENDERER_VERSION
    for img in (normal.frontal, normal.lateral):
        assert img.dtype == np.uint8 and img.shape == (SIZE, SIZE)
        assert img.min() < 15 and img.max() > 220  # black air outside, bright bone/abdomen
    small = render(size=128)
    assert small.frontal.shape == small.lateral.shape == (128, 128)


def test_deterministic_bytes(normal):
    again = render()
    assert again.frontal.tobytes() == normal.frontal.tobytes()
    assert again.lateral.tobytes() == normal.lateral.tobytes()
    tags = ("Pleural Effusion/right/small", "Nodule/lung/upper lobe/left")
    assert render(tags=tags).frontal.tobytes() == render(tags=tags).frontal.tobytes()


def test_case_id_and_seed_change_the_patient(normal):
    other_case = render("case-8")
    other_seed = render(seed=1)
    for other in (other_case, other_seed):
        assert np.abs(diff(other.frontal, normal.frontal)).mean() > 3
        assert np.abs(diff(other.lateral, normal.lateral)).mean() > 3


def test_modelled_and_unmodelled_partition():
    tags = [
        "normal",
        "No Indexing",
        "Cardiomegaly/mild",
        "Technical Quality of Image Unsatisfactory",
        "Lung/azygos lobe",
    ]
    out = render(tags=tags)
    assert [f.tag for f in out.modelled] == ["Cardiomegaly/mild"]
    assert {f.term for f in out.unmodelled} == {"Technical Quality of Image Unsatisfactory", "Lung"}
    assert not is_modelled(F("normal")) and not is_modelled(F("No Indexing"))
    assert not is_modelled(F("Technical Quality of Image Unsatisfactory"))
    assert is_modelled(F("Pleural Effusion/left/small")) and is_modelled(F("Calcified Granuloma"))


def test_import_is_light():
    code = "import benchmark.data.phantom, sys; sys.exit('torch' in sys.modules or 'scipy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ------------------------------------------------------------------------------------ anatomy


def test_lungs_darker_than_mediastinum_and_abdomen(normal):
    anat = build_case("case-7", [])[0]
    views = make_views(anat, SIZE)
    for name, img in (("frontal", normal.frontal), ("lateral", normal.lateral)):
        v = views[name]

        def at(p):
            c, r, _ = v.to_image(np.asarray(p, float))
            r, c = int(round(r)), int(round(c))
            return float(img[r - 2 : r + 3, c - 2 : c + 3].mean())

        lung = at(anat.lungs["right"].point(0.6, 0.0, 0.55))
        abdomen = at([-6.0, 0.0, anat.lungs["right"].dome_top - 6.0])
        assert abdomen > lung + 50, name
        if name == "frontal":
            spine = at([0.0, 0.0, anat.lungs["right"].dome_top + 4.0])  # spine behind the heart
            assert spine > lung + 60
    # the lung columns of the frontal view are darker than the mediastinal column
    mid_rows = slice(SIZE // 3, SIZE // 2)
    centre = normal.frontal[mid_rows, SIZE // 2 - 6 : SIZE // 2 + 6].mean()
    right_lung = normal.frontal[mid_rows, SIZE // 4 - 10 : SIZE // 4 + 10].mean()
    assert centre > right_lung + 60


def test_heart_mostly_left_of_midline():
    anat = build_case("case-7", [])[0]
    inv = np.linalg.inv(anat.heart.M)
    half = np.sqrt(inv[0, 0])
    left, right = anat.heart.center[0] + half, -(anat.heart.center[0] - half)
    assert 1.6 < left / right < 2.4
    assert 0.40 < cardiothoracic_ratio(anat) < 0.5
    assert anat.lungs["right"].dome_top - anat.lungs["left"].dome_top == pytest.approx(1.5, abs=0.55)


# ------------------------------------------------------------------------------------ both views, one patient


def _dome_row(img, row_hint, col, span=25):
    """Row of the steepest brightening (lung -> abdomen) near row_hint in one column band."""
    prof = img[row_hint - span : row_hint + span, col - 2 : col + 3].astype(float).mean(axis=1)
    grad = np.convolve(np.diff(prof), np.ones(3) / 3, mode="same")
    return row_hint - span + int(np.argmax(grad))


def test_dome_height_agrees_between_views():
    for tags in ((), ("Diaphragm/elevated/right",)):
        anat = build_case("case-7", [F(t) for t in tags])[0]
        views = make_views(anat, SIZE)
        out = render(tags=tags)
        lung = anat.lungs["right"]
        top = np.array([lung.dome_center[0], lung.dome_center[1], lung.dome_top])
        rows = {}
        for name, img in (("frontal", out.frontal), ("lateral", out.lateral)):
            c, r, _ = views[name].to_image(top)
            col = int(round(c)) if name == "frontal" else int(round(c)) + 8  # lateral: just behind the peak
            rows[name] = _dome_row(img, int(round(r)), col)
            # 10 px of 256: the steepest edge can be the other dome's on the lateral (both domes superimpose,
            # 1-2 cm apart); measured 8.7 on phantom-2.1's case-7 (thick soft tissue), 4 on phantom-2's
            assert abs(rows[name] - r) <= 10, (tags, name, rows[name], r)
        assert abs(rows["frontal"] - rows["lateral"]) <= 10


def test_elevated_dome_moves_up_in_both_views(normal):
    up = render(tags=("Diaphragm/elevated/right",))
    for a, b in ((up.frontal, normal.frontal), (up.lateral, normal.lateral)):
        d = diff(a, b)
        assert (d > 25).sum() > 150  # abdomen density now where lung was
    # frontal: patient's right = image left; the image right (left lung) is unchanged
    d = diff(up.frontal, normal.frontal)
    assert (d[:, : SIZE // 2] > 25).sum() > 10 * max((d[:, SIZE // 2 + 20 :] > 25).sum(), 1)


def test_cardiomegaly_widens_heart_on_frontal_and_deepens_it_on_lateral(normal):
    big = render(tags=("Cardiomegaly/moderate",))
    a0, a1 = build_case("case-7", [])[0], build_case("case-7", [F("Cardiomegaly/moderate")])[0]
    assert cardiothoracic_ratio(a0) < 0.5 < cardiothoracic_ratio(a1)
    assert cardiothoracic_ratio(build_case("case-7", [F("Cardiomegaly/mild")])[0]) == pytest.approx(0.55, abs=0.03)
    d = diff(big.frontal, normal.frontal)
    cols = np.flatnonzero((d > 15).sum(axis=0) > 3)
    assert cols.min() < SIZE // 2 - 15 < SIZE // 2 + 25 < cols.max()  # wider on both sides
    inv0, inv1 = (np.linalg.inv(a.heart.M) for a in (a0, a1))
    assert np.sqrt(inv1[1, 1]) > 1.15 * np.sqrt(inv0[1, 1])  # deeper (AP) heart ...
    dl = diff(big.lateral, normal.lateral)
    assert (dl > 15).sum() > 300  # ... visible on the lateral
    lateral_cols = np.flatnonzero((dl > 15).sum(axis=0) > 3)
    heart_col = make_views(a1, SIZE)["lateral"].to_image(a1.heart.center)[0]
    assert lateral_cols.min() < heart_col < lateral_cols.max()


# ------------------------------------------------------------------------------------ findings act where they should


def test_right_effusion_acts_on_image_left_base_only(normal):
    eff = render(tags=("Pleural Effusion/right/moderate",))
    d = diff(eff.frontal, normal.frontal)
    lower = slice(SIZE // 2, SIZE)
    assert np.abs(d[:, SIZE // 2 + 10 :]).mean() < 0.3  # patient's left (image right) untouched
    assert d[lower, : SIZE // 2].mean() > 5  # right base brighter
    assert (d[: SIZE // 3] > 10).sum() == 0  # apices untouched
    dl = diff(eff.lateral, normal.lateral)
    assert dl[lower].mean() > 2 and (dl[: SIZE // 3] > 10).sum() == 0
    # the posterior sulcus fills first: on the lateral (anterior on the left) fluid sits behind the lung's
    # centre (phantom-2 frames the lateral on the chest's depth, so the image centre is no landmark)
    ys, xs = np.nonzero(dl > 15)
    anat = build_case("case-7", [])[0]
    assert xs.mean() > make_views(anat, SIZE)["lateral"].to_image(anat.lungs["right"].center)[0] + 3


def test_left_findings_act_on_image_right(normal):
    for tag in (
        "Opacity/lung/base/left",
        "Pleural Effusion/left/small",
        "Pulmonary Atelectasis/base/left",
        "Pneumothorax/left/moderate",
        "Implanted Medical Device/left",
    ):
        d = np.abs(diff(render(tags=(tag,)).frontal, normal.frontal)).astype(float)
        assert d[:, SIZE // 2 :].sum() > 4 * d[:, : SIZE // 2].sum(), tag


def test_effusion_severity_order(normal):
    area = {}
    for sev in ("small", "moderate", "large"):
        d = diff(render(tags=(f"Pleural Effusion/right/{sev}",)).frontal, normal.frontal)
        area[sev] = int((d > 15).sum())
        # histogram equalisation is global: a bright effusion shifts grey levels on the other side too (90 % on
        # the effusion's side on phantom-2.1's case-7, more on phantom-2's)
        assert (d[:, : SIZE // 2] > 15).sum() > 0.85 * area[sev]
    assert 0 < area["small"] < area["moderate"] < area["large"]


def test_small_effusion_blunts_the_costophrenic_angle():
    base = build_case("case-7", [])[0]
    lung = base.lungs["right"]
    # the lateral angle: lowest aerated point at the lateral wall, now fluid
    angle = lung.point(0.97, 0.0, 0.0)
    assert base.lungs["right"].is_air(angle)[0]
    d = diff(render(tags=("Pleural Effusion/right/small",)).frontal, render().frontal)
    r, c = pixel("case-7", angle)
    assert d[r - 3 : r + 4, c - 3 : c + 4].mean() > 10


def test_upper_lobe_nodule_in_upper_half(normal):
    for tag in ("Nodule/lung/upper lobe/right", "Calcified Granuloma/lung/upper lobe/left"):
        d = diff(render(tags=(tag,)).frontal, normal.frontal)
        rows, cols = np.nonzero(d > 8)
        assert len(rows) > 3, tag
        assert rows.mean() < SIZE / 2, tag
        assert (cols.mean() < SIZE / 2) == tag.endswith("right"), tag


def test_calcified_granuloma_smaller_and_denser_than_nodule(normal):
    g = diff(render(tags=("Calcified Granuloma/lung/upper lobe/right",)).frontal, normal.frontal)
    n = diff(render(tags=("Nodule/lung/upper lobe/right",)).frontal, normal.frontal)
    assert (g > 8).sum() < (n > 8).sum()
    assert g.max() > n.max()


def test_hyperinflation_lowers_domes_and_darkens_lungs(normal):
    base = build_case("case-7", [])[0]
    for tag in (
        "Lung/hyperdistention",
        "Emphysema",
        "Pulmonary Disease, Chronic Obstructive",
        "Diaphragm/bilateral/flattened",
    ):
        anat = build_case("case-7", [F(tag)])[0]
        for side in ("right", "left"):
            assert anat.lungs[side].dome_top < base.lungs[side].dome_top - 1.0, tag
    hyper = render(tags=("Emphysema",))
    d = diff(hyper.frontal, normal.frontal)
    assert d[SIZE // 4 : SIZE // 2, SIZE // 6 : SIZE // 3].mean() < -2  # darker right upper lung
    low = build_case("case-7", [F("Lung/hypoinflation")])[0]
    assert low.lungs["right"].dome_top > base.lungs["right"].dome_top + 2


def test_pneumothorax_is_apical_lateral_without_markings(normal):
    pt = render(tags=("Pneumothorax/right/moderate",))
    d = diff(pt.frontal, normal.frontal)
    rows, cols = np.nonzero(d < -8)
    assert len(rows) > 50
    assert cols.mean() < SIZE / 2 and rows.mean() < SIZE * 0.55
    anat = build_case("case-7", [F("Pneumothorax/right/moderate")])[0]
    base = build_case("case-7", [])[0]
    assert len(anat.parts.tube_a) < len(base.parts.tube_a)  # vessels dropped there


def test_every_modelled_family_changes_the_image(normal):
    tags = [
        "Cardiac Shadow/enlarged",
        "Airspace Disease/lung/middle lobe/right",
        "Consolidation/lung/lower lobe/left",
        "Infiltrate/lung/base/bilateral",
        "Pneumonia/upper lobe/right",
        "Density/retrocardiac",
        "Pulmonary Edema",
        "Pulmonary Congestion",
        "Markings/bronchovascular",
        "Markings/lung/interstitial",
        "Pulmonary Atelectasis/lingula",
        "Mass/lung/upper lobe/left",
        "Granuloma/lung/base/right",
        "Calcinosis/lung/hilum/lymph nodes/right",
        "Calcinosis/mediastinum/lymph nodes",
        "Lung, Hyperlucent",
        "Lung/hypoinflation",
        "Diaphragmatic Eventration/left",
        "Scoliosis/thoracic vertebrae/right",
        "Thoracic Vertebrae/degenerative",
        "Spondylosis/thoracic vertebrae",
        "Osteophyte/thoracic vertebrae/multiple",
        "Kyphosis/thoracic vertebrae",
        "Aorta/tortuous",
        "Aorta, Thoracic/tortuous/mild",
        "Atherosclerosis/aorta",
        "Calcinosis/aorta",
        "Catheters, Indwelling/right",
        "Tube, Inserted/trachea",
        "Medical Device",
        "Surgical Instruments/mediastinum",
        "Surgical Instruments/abdomen/right",
        "Fractures, Bone/ribs/healed/left",
        "Hernia, Hiatal/large",
        "Cicatrix/lung/apex/bilateral",
        "Thickening/pleura/right",
        "Costophrenic Angle/blunted/left",
        "Granulomatous Disease",
        "Pneumoperitoneum",
        "Spinal Fusion/thoracic vertebrae",
        "Epicardial Fat/prominent",
        "Mediastinum/prominent",
        "Stents/coronary vessels",
        "Foreign Bodies/thorax/left",
        "Cavitation",
        "Deformity/thoracic vertebrae",
        "Bone Diseases, Metabolic",
        "Subcutaneous Emphysema",
        "Nipple Shadow/bilateral",
    ]
    for tag in tags:
        f = F(tag)
        assert is_modelled(f), tag
        out = render(tags=(tag,), size=128)
        ref = render(size=128)
        d = np.abs(diff(out.frontal, ref.frontal)) + np.abs(diff(out.lateral, ref.lateral))
        assert (d > 12).sum() >= 3, tag
        assert out.modelled == (f,)


def test_pacemaker_high_on_the_left_with_leads_to_the_heart(normal):
    d = diff(render(tags=("Implanted Medical Device/left",)).frontal, normal.frontal)
    rows, cols = np.nonzero(d > 60)
    assert cols.mean() > SIZE / 2 + 20 and rows.mean() < SIZE * 0.4  # generator: image right, high
    anat = build_case("case-7", [F("Implanted Medical Device/left")])[0]
    r_heart, _ = pixel("case-7", anat.heart.center)
    assert (np.nonzero(d > 8)[0] > r_heart - 10).any()  # leads reach down into the heart


def test_sternotomy_wires_on_the_sternum_in_the_lateral(normal):
    out = render(tags=("Surgical Instruments/mediastinum",))
    dl = diff(out.lateral, normal.lateral)
    anat = build_case("case-7", [])[0]
    v = make_views(anat, SIZE)["lateral"]
    sternum_col = v.to_image(anat.sternum[3])[0]
    rows, cols = np.nonzero(dl > 40)
    assert len(rows) > 10 and abs(np.median(cols) - sternum_col) < 10


# ------------------------------------------------------------------------------------ coverage of the real reports


def test_coverage_of_abnormal_reports():
    from benchmark.data.reports import load_reports

    reports, _ = load_reports()
    abnormal = [r for r in reports.values() if r.abnormal and r.image_ids and not r.is_empty]
    full = sum(all(is_modelled(f) for f in r.abnormal) for r in abnormal) / len(abnormal)
    tags = [f for r in abnormal for f in r.abnormal]
    per_tag = sum(map(is_modelled, tags)) / len(tags)
    # measured: 2,380 abnormal reports with images; 89.5% have every abnormal finding modelled, 99.1% at
    # least one; 95.7% of their abnormal tags are modelled (the rest: mostly "Technical Quality ...").
    assert full > 0.87
    assert per_tag > 0.94
