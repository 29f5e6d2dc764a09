"""What a :class:`~fastsam_onnx.Result` turns into, each from the instances' box-sized crops: edge maps
(:mod:`.edges`), polygons (:mod:`.polygons`), object proposals (:mod:`.proposals`), annotation files — labelme,
YOLO-seg, COCO — (:mod:`.formats`), COCO run-length encoding (:mod:`.rle`) and overlays (:mod:`.draw`).

Importing this package imports none of them; import the module you need.
"""
