from base.runtime import serve
from stages.detect_objects.handler import FUNCTION

if __name__ == "__main__":
    serve(FUNCTION)
