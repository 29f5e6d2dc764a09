"""Drive X-AnyLabeling's own remote-server client (``anylabeling.services.auto_labeling.remote_server.RemoteServer``
from PyPI ``x-anylabeling-cvhub`` 4.x) headless against a running server; run by tests/test_anylabeling.py with
the Python of a separate virtualenv that has that package (see .ci/run). Prints one JSON line.

    python xal_driver.py URL KEY IMAGE POINT_JSON BOX_JSON
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> None:
    url, key, image, point, box = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
    from PyQt6.QtGui import QImage
    from PyQt6.QtWidgets import QApplication

    app = QApplication([])  # noqa: F841 - Qt objects need it
    import anylabeling.config as xconfig

    # the user's settings file, as the app's "Remote Server" dialog writes it
    rc = os.path.join(tempfile.mkdtemp(), "xanylabelingrc")
    with open(rc, "w") as f:
        json.dump({"remote_server_settings": {"server_url": url, "api_key": key, "timeout": 60}}, f)
    xconfig.current_config_file = rc
    from anylabeling.services.auto_labeling.remote_server import RemoteServer

    messages: list = []
    client = RemoteServer({"type": "remote_server", "display_name": "Remote Server"}, messages.append)
    models = client.get_available_models()
    out: dict = {"models": models, "server_url": client.server_url}
    if not models:
        print(json.dumps({**out, "messages": messages}))
        return
    model_id = next(iter(models))
    client.set_model_id(model_id)
    info = models[model_id]
    tasks = info.get("available_tasks") or []
    client.set_task(tasks[0]["id"] if tasks else None)
    widgets = {w["name"]: w.get("value") for w in info.get("widgets", [])}  # as update_remote_server_widgets applies them
    if widgets.get("edit_conf") is not None:
        client.set_auto_labeling_conf(widgets["edit_conf"])
    if widgets.get("edit_iou") is not None:
        client.set_auto_labeling_iou(widgets["edit_iou"])
    if widgets.get("mask_fineness_slider") is not None:  # the app's slider → epsilon mapping
        client.set_mask_fineness(0.0001 + (widgets["mask_fineness_slider"] - 1) * (0.01 - 0.0001) / 99)
    qimage = QImage(image)

    def shapes(result) -> list:
        return [{"label": s.label, "shape_type": s.shape_type, "points": [[p.x(), p.y()] for p in s.points],
                 "score": s.score, "group_id": s.group_id} for s in result.shapes]

    out["everything"] = shapes(client.predict_shapes(qimage, image))
    client.set_auto_labeling_marks([{"type": "point", "data": point, "label": 1}])
    out["point"] = shapes(client.predict_shapes(qimage, image))
    client.set_auto_labeling_marks([{"type": "rectangle", "data": box, "label": 1}])
    out["box"] = shapes(client.predict_shapes(qimage, image))
    client.set_auto_labeling_marks([])
    out["text"] = shapes(client.predict_shapes(qimage, image, text_prompt="a blue rectangle."))
    if len(tasks) > 1:
        client.set_task(tasks[1]["id"])
        client.set_auto_labeling_marks([{"type": "rectangle", "data": box, "label": 1}])
        out["box_as_rectangle"] = shapes(client.predict_shapes(qimage, image))
    client.headers["Token"] = "wrong-" + key
    out["wrong_key"] = shapes(client.predict_shapes(qimage, image))
    out["messages"] = [str(m) for m in messages]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
