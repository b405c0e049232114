"""UCF101 middle frames: ``ucf101/{UCF-101-midframes,ucfTrainTestlist}`` + ``split_zhou_UCF101.json``."""
import os
import re

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .base import BenchmarkDataset, label_of, split_trainval


def split_camel_case(action):
    """``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup`` (the frame folders' naming)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(BenchmarkDataset):
    """UCF101 actions, one middle frame per video; class names are the camel-case words joined by ``_``."""

    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    split_gdrive_id = "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"

    def read_video_list(self, file_name, action_to_label):
        """Items for the videos of a train/test list (``Action/v_Action_gXX_cYY.avi [label]``)."""
        items = []
        for line in self.read_text_lines("ucfTrainTestlist", file_name):
            action, video = line.split()[0].split("/")
            classname = split_camel_case(action)
            impath = os.path.join(self.image_dir, classname, video.replace(".avi", ".jpg"))
            label = label_of(action_to_label, action, file_name, "classInd.txt")
            items.append(Datum(impath=impath, label=label, classname=classname))
        return items

    def build_full_split(self):
        """Split 1: trainlist01 split 80/20 per class into train/val, testlist01 as test."""
        class_index = (line.split() for line in self.read_text_lines("ucfTrainTestlist", "classInd.txt"))
        action_to_label = {action: int(index) - 1 for index, action in class_index}
        trainval = self.read_video_list("trainlist01.txt", action_to_label)
        test = self.read_video_list("testlist01.txt", action_to_label)
        train, val = split_trainval(trainval)
        return train, val, test
