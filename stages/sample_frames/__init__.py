"""sample-frames (VideoSearcher ffmpeg-3): JPEG frames of a clip at a fixed interval."""
