"""detect-objects: YOLOv4-tiny on sampled frames (VideoSearcher "object-detector")."""
