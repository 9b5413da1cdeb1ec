"""What the Deep Consensus protocol reads from Scipion: the growing input sets, handed to the
engine's ``Admission``, and the extra training data cached in the run folder's
``additional/`` as plain arrays for the engine's stages."""
import os

import numpy as np

import pwem.objects as emobj

from ..constants import DEEP_PARTICLE_SIZE
from ..run.streaming import Admission


class StreamReader:
    """The items of a set that may still be growing, each handed over once.

    Each poll costs O(new items): items are read past the highest id seen. Should ids not
    grow with insertion (the count falls short of the set size), the whole set is read again
    after ``reset``. ``closed`` is read before the items, so once it is True every item has
    been handed over.
    """

    def __init__(self, SetClass, filename):
        self.SetClass, self.filename = SetClass, filename
        self.lastId, self.count, self.closed = 0, 0, False

    def poll(self, onItem, reset=None):
        if self.closed:
            return False
        items = self.SetClass(filename=self.filename)
        try:
            items.loadProperty("_streamState")
            items.loadProperty("_size")
            closed, size = items.isStreamClosed(), items.getSize() or 0
            if size == self.count and not closed:
                return False
            for item in items.iterItems(where="id > %d" % self.lastId):
                onItem(item)
                self.lastId = max(self.lastId, item.getObjId())
                self.count += 1
            if self.count < size:
                if reset is not None:
                    reset()
                self.lastId, self.count = 0, 0
                for item in items.iterItems():
                    onItem(item)
                    self.lastId = max(self.lastId, item.getObjId())
                    self.count += 1
        finally:
            items.close()
        self.closed = closed
        return True


def open_streams(protocol):
    """(Admission, readers) for the protocol's coordinate sets, their micrographs and CTFs."""
    coordSets = [p.get() for p in protocol.inputCoordinates]
    micSets = [c.getMicrographs() for c in coordSets]
    refSampling = micSets[0].getSamplingRate()
    keys = [m.getFileName() for m in micSets]
    withCtf = not protocol.ignoreCTF.get() and protocol.ctfRelations.get() is not None
    admission = Admission(keys, [m.getSamplingRate() / refSampling for m in micSets], withCtf)
    readers = {"micrographs": {key: StreamReader(emobj.SetOfMicrographs, key) for key in keys},
               "coordinates": [StreamReader(emobj.SetOfCoordinates, c.getFileName())
                               for c in coordSets],
               "ctf": None}
    if withCtf:
        readers["ctf"] = StreamReader(emobj.SetOfCTF, protocol.ctfRelations.get().getFileName())
        acquisition = micSets[0].getAcquisition()
        readers["acquisition"] = (acquisition.getVoltage(),
                                  acquisition.getSphericalAberration(),
                                  acquisition.getAmplitudeContrast())
        readers["names"] = admission.names[keys[0]]
    return admission, readers


def poll_streams(admission, readers):
    for key, reader in readers["micrographs"].items():
        reader.poll(lambda mic, key=key: admission.add_micrograph(
            key, mic.getObjId(), mic.getMicName(), mic.getFileName()))
        admission.micrographs_closed[key] = reader.closed
    for i, reader in enumerate(readers["coordinates"]):
        reader.poll(lambda coord, i=i: admission.add_pick(i, coord.getMicId(), coord.getX(),
                                                          coord.getY()),
                    reset=lambda i=i: admission.reset_picks(i))
        admission.coordinates_closed[i] = reader.closed
    if readers["ctf"] is not None:
        readers["ctf"].poll(lambda ctf: _add_ctf(admission, readers, ctf))
        admission.ctfs_closed = readers["ctf"].closed


def _add_ctf(admission, readers, ctf):
    try:
        name = ctf.getMicrograph().getMicName()
    except AttributeError:
        name = None
    if name is None:
        name = readers["names"].get(ctf.getObjId())
    phase = ctf.getPhaseShift()
    admission.add_ctf(name, (ctf.getDefocusU(), ctf.getDefocusV(), ctf.getDefocusAngle(),
                             *readers["acquisition"], float(phase) if phase else 0.0))


def convert_micrograph(path, target):
    """A micrograph in a format the engine does not read, converted to MRC once."""
    if not os.path.exists(target):
        from pwem.emlib.image import ImageHandler
        tmp = target + ".tmp.mrc"
        ImageHandler().convert(path, tmp)
        os.replace(tmp, target)
    return target


def cache_particles(particles, path):
    """The images of a particle set as one (n, 128, 128) array."""
    from pwem.emlib.image import ImageHandler
    handler = ImageHandler()
    images = [np.asarray(handler.read(p.getLocation()).getData(), dtype=np.float32)
              for p in particles.iterItems()]
    boxes = np.stack(images) if images else np.zeros((0, DEEP_PARTICLE_SIZE,
                                                      DEEP_PARTICLE_SIZE), np.float32)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, boxes.reshape((-1, DEEP_PARTICLE_SIZE, DEEP_PARTICLE_SIZE)))


def cache_coordinates(coordSet, reference, path):
    """Coordinates by micrograph name, in the pixels of the ``reference`` micrographs."""
    scale = coordSet.getMicrographs().getSamplingRate() / reference.getSamplingRate()
    names = {m.getObjId(): m.getMicName() for m in coordSet.getMicrographs().iterItems()}
    byMic = {}
    for coord in coordSet.iterItems():
        micName = names.get(coord.getMicId(), coord.getMicName())
        byMic.setdefault(micName, []).append((coord.getX() * scale, coord.getY() * scale))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **{"mic_%d" % i: np.array(xy) for i, xy in enumerate(byMic.values())},
             names=np.array(list(byMic.keys())))


def cache_custom_training_data(protocol, run):
    """The form's Custom additional data, as ``additional/{positives,negatives}_*`` files."""
    if protocol.trainingDataType.get() == protocol.ADD_DATA_TRAIN_CUSTOM_OPT_PARTS:
        for pointer, kind in ((protocol.trainTrueSetOfParticles, "positives"),
                              (protocol.trainFalseSetOfParticles, "negatives")):
            if pointer.get() is not None:
                cache_particles(pointer.get(), run.path("additional", kind + "_particles.npy"))
    else:
        reference = protocol.inputCoordinates[0].get().getMicrographs()
        for pointer, kind in ((protocol.trainTrueSetOfCoords, "positives"),
                              (protocol.trainFalseSetOfCoords, "negatives")):
            if pointer.get() is not None:
                cache_coordinates(pointer.get(), reference,
                                  run.path("additional", kind + "_coordinates.npz"))
