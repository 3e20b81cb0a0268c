/* A probe, not part of monitor: what reading a domain's devices costs in C.
 *
 * read_devices(xml) parses the bytes with libxml2 (the system's; no network, no
 * entities substituted) and returns, for every element child of <devices>, what the
 * engine's Python reader (monitor/domxml/devices.py) takes from it before the kind's
 * rules: (tag, type attribute, device attribute, alias name, {address attributes},
 * position). parse_only(xml) is the same parse with no Python object built: the C
 * reader's own floor. Build and run: tools/probe/run (docs/performance.md, "A device
 * reader in C, measured as a probe").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

static const int OPTIONS = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
static PyObject *interned; /* tag and attribute names, shared across calls */

static PyObject *name_of(const xmlChar *name)
{
    PyObject *found = PyDict_GetItemString(interned, (const char *)name);
    if (found) {
        Py_INCREF(found);
        return found;
    }
    found = PyUnicode_FromString((const char *)name);
    if (found && PyDict_SetItemString(interned, (const char *)name, found) < 0) {
        Py_DECREF(found);
        return NULL;
    }
    return found;
}

/* An attribute's value when it is one text node (what libvirt writes), else its copy. */
static PyObject *attribute_value(xmlAttrPtr attribute)
{
    xmlNodePtr text = attribute->children;
    if (text && text->type == XML_TEXT_NODE && text->next == NULL)
        return PyUnicode_FromString((const char *)text->content);
    xmlChar *copy = xmlNodeGetContent((xmlNodePtr)attribute);
    PyObject *value = PyUnicode_FromString(copy ? (const char *)copy : "");
    xmlFree(copy);
    return value;
}

static PyObject *attribute(xmlNodePtr node, const char *name)
{
    for (xmlAttrPtr a = node->properties; a; a = a->next)
        if (a->ns == NULL && strcmp((const char *)a->name, name) == 0)
            return attribute_value(a);
    Py_RETURN_NONE;
}

static PyObject *address_of(xmlNodePtr address)
{
    PyObject *attrs = PyDict_New();
    for (xmlAttrPtr a = address->properties; a && attrs; a = a->next) {
        PyObject *key = name_of(a->name), *value = attribute_value(a);
        if (!key || !value || PyDict_SetItem(attrs, key, value) < 0)
            Py_CLEAR(attrs);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return attrs;
}

static PyObject *device_of(xmlNodePtr element, Py_ssize_t position)
{
    PyObject *alias = NULL, *address = NULL;
    for (xmlNodePtr child = element->children; child; child = child->next) {
        if (child->type != XML_ELEMENT_NODE)
            continue;
        if (!alias && strcmp((const char *)child->name, "alias") == 0)
            alias = attribute(child, "name");
        else if (!address && strcmp((const char *)child->name, "address") == 0)
            address = address_of(child);
    }
    if (!alias) {
        alias = Py_None;
        Py_INCREF(alias);
    }
    if (!address)
        address = PyDict_New();
    PyObject *device = Py_BuildValue("(NNNNNn)", name_of(element->name),
                                     attribute(element, "type"), attribute(element, "device"),
                                     alias, address, position);
    return device;
}

static xmlDocPtr parse(PyObject *args)
{
    const char *bytes;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "y#", &bytes, &length))
        return NULL;
    xmlDocPtr document = xmlReadMemory(bytes, (int)length, NULL, NULL, OPTIONS);
    if (!document)
        PyErr_SetString(PyExc_ValueError, "not well-formed XML");
    return document;
}

static PyObject *read_devices(PyObject *self, PyObject *args)
{
    xmlDocPtr document = parse(args);
    if (!document)
        return NULL;
    PyObject *found = PyList_New(0);
    xmlNodePtr root = xmlDocGetRootElement(document);
    for (xmlNodePtr devices = root ? root->children : NULL; devices; devices = devices->next) {
        if (devices->type != XML_ELEMENT_NODE || strcmp((const char *)devices->name, "devices"))
            continue;
        Py_ssize_t position = 0;
        for (xmlNodePtr element = devices->children; element && found; element = element->next) {
            if (element->type != XML_ELEMENT_NODE)
                continue;
            PyObject *device = device_of(element, position++);
            if (!device || PyList_Append(found, device) < 0)
                Py_CLEAR(found);
            Py_XDECREF(device);
        }
        break;
    }
    xmlFreeDoc(document);
    return found;
}

static PyObject *parse_only(PyObject *self, PyObject *args)
{
    xmlDocPtr document = parse(args);
    if (!document)
        return NULL;
    xmlFreeDoc(document);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"read_devices", read_devices, METH_VARARGS, "The devices of a domain's XML, as tuples."},
    {"parse_only", parse_only, METH_VARARGS, "Parse and free: the C reader's floor."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "creader", NULL, -1, methods};

PyMODINIT_FUNC PyInit_creader(void)
{
    interned = PyDict_New();
    return interned ? PyModule_Create(&module) : NULL;
}
